// Feed a modelport ONNX graph from rows keyed by input name, as the bundle's layout says:
// one [n, 1] tensor per column (numbers in the layout's dtype, categories as strings, a
// missing category as the layout's `missing` string) or one [n, k] matrix.

export async function onnxScorer(ort, bundle, manifest) {
  const layout = manifest.onnx;
  if (!manifest.files.onnx || !layout) throw new Error(`${manifest.uri} has no ONNX graph in its bundle`);
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation; one row needs none
  const session = await ort.InferenceSession.create(new URL(manifest.files.onnx, bundle).href);
  const signature = await (await fetch(new URL(manifest.files.signature, bundle))).json();
  const kinds = Object.fromEntries(signature.inputs.map((c) => [c.name, c.kind]));
  const float64 = layout.dtype === "float64";
  const number = (v) => (v === null || v === undefined || v === "" ? NaN : Number(v));
  const numbers = (values, dims) => float64
    ? new ort.Tensor("float64", Float64Array.from(values, number), dims)
    : new ort.Tensor("float32", Float32Array.from(values, number), dims);
  const k = manifest.classes.length;

  async function scoreRows(rows) {
    if (rows.length === 0) return [];
    const n = rows.length;
    const feeds = {};
    if (layout.inputs === "matrix") {
      feeds[layout.names[0]] = numbers(rows.flatMap((r) => layout.columns.map((c) => r[c])), [n, layout.columns.length]);
    } else {
      layout.names.forEach((name, i) => {
        const column = layout.columns[i];
        const values = rows.map((r) => r[column]);
        feeds[name] = kinds[column] === "categorical"
          ? new ort.Tensor("string", values.map((v) => (v === null || v === undefined ? layout.missing : String(v))), [n, 1])
          : numbers(values, [n, 1]);
      });
    }
    const results = await session.run(feeds);
    const proba = results[layout.outputs.proba].data;
    return rows.map((_, i) => Array.from(proba.slice(i * k, (i + 1) * k), Number));
  }

  return { describe: `${manifest.uri}, ONNX graph ${manifest.files.onnx} in onnxruntime-web ${ort.env.versions?.web ?? ""}`.trim(),
           scoreRows };
}
