// The page logic shared by both browser examples: read the bundle, build a form from the
// model's signature, check each customer as modelport's server and runtime do, score it.
//
// Query parameters: bundle=<folder of a bundle> (default ../bundles/hgb/),
// customer=<JSON of one customer> (fills the form), rows=<URL of a JSON list of customers>
// (scores them all into the table; a customer that fails a check shows its reason).

const params = new URLSearchParams(location.search);

/** The reason `row` cannot be scored, or null: the checks of modelport's web service. */
export function problem(row, signature) {
  const names = signature.inputs.map((c) => c.name);
  for (const key of Object.keys(row)) {
    if (!names.includes(key)) return `unknown field ${JSON.stringify(key)}`;
  }
  for (const c of signature.inputs) {
    if (!(c.name in row)) return `missing field ${JSON.stringify(c.name)} (send null for a missing value)`;
    const v = row[c.name];
    if (v === null || v === undefined || (typeof v === "number" && Number.isNaN(v))) continue;
    if (c.kind === "numeric") {
      const x = typeof v === "string" ? (v.trim() === "" ? NaN : Number(v)) : v;
      if (typeof x !== "number" || Number.isNaN(x)) return `${c.name} must be a number, got ${JSON.stringify(v)}`;
      if (c.min !== undefined && c.max !== undefined && (x < c.min || x > c.max)) {
        return `${c.name} ${x} is outside the range seen in training [${c.min}, ${c.max}]`;
      }
    } else if (c.categories && !c.categories.includes(String(v))) {
      return `${c.name} ${JSON.stringify(v)} is a category unseen in training`;
    }
  }
  return null;
}

function exampleRow(signature) {
  const row = {};
  for (const c of signature.inputs) {
    if (c.kind === "categorical") row[c.name] = c.categories?.[0] ?? null;
    else if (c.min !== undefined && c.max !== undefined) row[c.name] = Math.round((c.min + c.max) / 2);
    else row[c.name] = 0;
  }
  return row;
}

function buildForm(form, signature, row, onChange) {
  for (const c of signature.inputs) {
    const label = document.createElement("label");
    label.textContent = c.name.replaceAll("_", " ");
    label.htmlFor = c.name;
    let input;
    if (c.kind === "categorical") {
      input = document.createElement("select");
      for (const value of [...(c.categories ?? []), ""]) {
        input.append(new Option(value === "" ? "(unknown)" : value, value));
      }
    } else {
      input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      if (c.min !== undefined) input.min = c.min;
      if (c.max !== undefined) input.max = c.max;
    }
    input.id = input.name = c.name;
    input.value = row[c.name] ?? "";
    input.addEventListener("input", onChange);
    form.append(label, input);
  }
}

function readForm(form, signature) {
  const row = {};
  for (const c of signature.inputs) {
    const text = form.elements[c.name].value;
    row[c.name] = text === "" ? null : c.kind === "numeric" ? Number(text) : text;
  }
  return row;
}

/** Run the page: `makeScorer(bundleURL, manifest)` resolves to {describe, scoreRows}. */
export async function start(makeScorer) {
  const error = document.getElementById("error");
  try {
    const bundle = new URL(params.get("bundle") ?? "../bundles/hgb/", location.href);
    const manifest = await (await fetch(new URL("bundle.json", bundle))).json();
    const signature = await (await fetch(new URL(manifest.files.signature, bundle))).json();
    const scorer = await makeScorer(bundle, manifest);
    const positive = manifest.classes.length - 1;
    document.getElementById("model").textContent = `Model: ${scorer.describe}.`;

    if (params.has("rows")) {
      const rows = await (await fetch(new URL(params.get("rows"), location.href))).json();
      const problems = rows.map((row) => problem(row, signature));
      const ok = rows.filter((_, i) => problems[i] === null);
      const scored = await scorer.scoreRows(ok);
      const table = document.getElementById("scores");
      let next = 0;
      rows.forEach((_, i) => {
        const tr = table.tBodies[0].insertRow();
        tr.insertCell().textContent = i;
        const cell = tr.insertCell();
        if (problems[i] !== null) {
          cell.textContent = problems[i];
          cell.dataset.error = problems[i];
        } else {
          const proba = scored[next++];
          cell.textContent = (100 * proba[positive]).toFixed(1) + " %";
          // every probability at full precision: String() reads back as the same double
          cell.dataset.proba = Array.from(proba, String).join(" ");
        }
      });
      table.hidden = false;
    }

    const form = document.getElementById("customer");
    const output = document.getElementById("score");
    const initial = params.has("customer") ? JSON.parse(params.get("customer")) : exampleRow(signature);
    const update = async () => {
      const row = readForm(form, signature);
      const reason = problem(row, signature);
      error.textContent = reason ?? "";
      if (reason !== null) {
        output.textContent = "–";
        delete output.dataset.proba;
        return;
      }
      const [proba] = await scorer.scoreRows([row]);
      output.textContent = (100 * proba[positive]).toFixed(1) + " %";
      output.dataset.proba = Array.from(proba, String).join(" ");
    };
    buildForm(form, signature, initial, update);
    await update();
  } catch (exc) {
    error.textContent = `The model could not be loaded: ${exc}`;
  }
  document.body.dataset.state = "ready";
}
