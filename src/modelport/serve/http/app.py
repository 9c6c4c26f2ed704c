"""The web service: one ASGI app serving many registered models over several protocols.

:func:`create_app` loads each model URI (``churn@production`` is served as ``churn``), wires
the protocol routes to one scoring path (decode -> check against the signature -> micro-batch
-> encode) and wraps the app in the access-log and, with a token, the bearer-auth
middlewares. Every response past the token check carries the ``modelport-model-version``
header. A background task polls the registry and hot-swaps new versions; see
:mod:`modelport.serve.http.models`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import modelport
from modelport.errors import NotFound, UserError
from modelport.scoring import reasons
from modelport.scoring.checks import InputPolicy, Unreadable, check, warning_text
from modelport.scoring.following import Follower
from modelport.scoring.metrics import HttpMetrics
from modelport.serve.http import protocol_json, protocol_kserve, protocol_mlflow, protocol_v2
from modelport.serve.http.access_log import AccessLog
from modelport.serve.http.auth import BearerAuth, read_token, unauthenticated
from modelport.serve.http.batching import RowsRejected
from modelport.serve.http.models import Loaded, ServedModel, follow, parse_rollout
from modelport.serve.http.openapi import DOCS_HTML, document
from modelport.serve.http.prediction_log import PredictionLog, resolve_hook
from modelport.serve.http.routing import OFFLOAD_BYTES, HTTPError, Request, Response, Router
from modelport.serve.http.settings import ServeSettings

if TYPE_CHECKING:
    from modelport.monitor.log import PredictionLogger
    from modelport.registry import Registry
    from modelport.scoring.checks import Checked
    from modelport.scoring.reasons import Reasons
    from modelport.serve.http.batching import Outputs
    from modelport.serve.http.routing import ASGIApp, Receive, Scope, Send
    from modelport.uri import ModelURI

log = logging.getLogger("modelport.serve")
VERSION_HEADER = b"modelport-model-version"
#: answers of more rows than this are encoded in a worker thread, off the event loop
OFFLOAD_ROWS = 4096
#: requests of more rows than this are explained in a worker thread, off the event loop
EXPLAIN_INLINE_ROWS = 8


class ModelServer:
    """The ASGI app proper: routes, models, metrics, polling."""

    def __init__(self, served: dict[str, ServedModel], *, policy: InputPolicy,
                 metrics: HttpMetrics,
                 max_body_bytes: int, poll_seconds: float,
                 prediction_log: PredictionLog | PredictionLogger | None,
                 lookup_store: str | None,
                 feature_table: str | None, body_timeout_s: float = 30.0) -> None:
        self.served = served
        self.policy = policy
        self.metrics = metrics
        self.max_body = max_body_bytes
        self.body_timeout = body_timeout_s
        self.poll_seconds = poll_seconds
        self.prediction_log = prediction_log
        self.lookup_store = lookup_store
        self.feature_table = feature_table
        self.router = self._routes()
        self._poller: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._openapi: bytes | None = None
        self._refresh_gauges()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        try:
            handler, params = self.router.match(scope["method"], scope["path"])
            request = Request(scope, receive, params, self.max_body, self.body_timeout)
            request.id = scope.get("state", {}).get("request_id", "")
            response = await handler(request)
        except HTTPError as exc:
            response = exc.response()
        except Exception:  # a bug, not the client's input: every input error is an HTTPError
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            response = Response.json({"error": "internal error; see the server log"}, 500)
        if not unauthenticated(scope):
            response.headers.append(
                (VERSION_HEADER, (response.version or self._versions()).encode()))
        await response.send(send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        """Start polling the registry for new versions (needs a running event loop)."""
        if self._poller is None and self.poll_seconds > 0:
            self._poller = asyncio.get_running_loop().create_task(self._poll_forever())
        # what start-up built (libraries, the models) lives as long as the server: keep it
        # out of the collector's full passes, which otherwise stall requests for tens of
        # milliseconds now and then
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        """Stop polling, let shadow calls finish, flush the prediction log."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        for served in self.served.values():
            for _, f in served.followers():
                f.current.batcher.close()
                await asyncio.to_thread(f.heartbeat.stop)  # off the console's live list
        if self.prediction_log is not None:
            await asyncio.to_thread(self.prediction_log.close)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await asyncio.to_thread(self.poll)

    def poll(self) -> None:
        """Check every followed URI once; swap in new versions (blocking; any thread)."""
        for served in self.served.values():
            for _, f in served.followers():
                f.poll()
        self._refresh_gauges()

    def _refresh_gauges(self) -> None:
        for served in self.served.values():
            for role, f in served.followers():
                self.metrics.set_serving(served.name, role, f.version)

    def _versions(self) -> str:
        if len(self.served) == 1:
            return str(next(iter(self.served.values())).champion.current.version)
        return ",".join(f"{n}={s.champion.current.version}" for n, s in self.served.items())

    # -- routes ----------------------------------------------------------------------------

    def _routes(self) -> Router:
        r = Router()
        for path in ("/ping", "/health"):
            r.add("GET", path, self.ping)
        r.add("GET", "/version", self.version)
        r.add("GET", "/metrics", self.metrics_route)
        r.add("GET", "/openapi.json", self.openapi)
        r.add("GET", "/docs", self.docs)
        r.add("GET", "/models", self.models)
        r.add("POST", "/invocations", self.invocations)
        r.add("POST", "/predict/{model}", self.predict)
        r.add("GET", "/v1/models/{model}", self.v1_model)
        r.add("POST", "/v1/models/{model}:predict", self.v1_predict)
        r.add("GET", "/v2", self.v2_server)
        r.add("GET", "/v2/health/live", self.v2_live)
        r.add("GET", "/v2/health/ready", self.v2_ready)
        r.add("GET", "/v2/models/{model}", self.v2_model)
        r.add("GET", "/v2/models/{model}/versions/{version}", self.v2_model)
        r.add("GET", "/v2/models/{model}/ready", self.v2_model_ready)
        r.add("GET", "/v2/models/{model}/versions/{version}/ready", self.v2_model_ready)
        r.add("POST", "/v2/models/{model}/infer", self.v2_infer)
        r.add("POST", "/v2/models/{model}/versions/{version}/infer", self.v2_infer)
        r.add("GET", "/lookup/{model}/{id}", self.lookup)
        return r

    async def ping(self, req: Request) -> Response:
        return Response.text("\n")

    async def version(self, req: Request) -> Response:
        return Response.text(modelport.__version__)

    async def metrics_route(self, req: Request) -> Response:
        body, content_type = self.metrics.exposition()
        return Response(body, content_type=content_type.encode())

    async def openapi(self, req: Request) -> Response:
        if self._openapi is None:
            self._openapi = Response.json(document(self.served)).body
        return Response(self._openapi)

    async def docs(self, req: Request) -> Response:
        return Response.text(DOCS_HTML, content_type=b"text/html; charset=utf-8")

    async def models(self, req: Request) -> Response:
        return Response.json({"models": [s.health() for s in self.served.values()]})

    async def v2_server(self, req: Request) -> Response:
        return Response.json({"name": "modelport", "version": modelport.__version__,
                              "extensions": ["binary_tensor_data"]})

    async def v2_live(self, req: Request) -> Response:
        return Response.json({"live": True})

    async def v2_ready(self, req: Request) -> Response:
        if unauthenticated(req.scope):  # a probe without the token learns only that we are ready
            return Response.json({"ready": True})
        errors = {s.name: f.error for s in self.served.values() for _, f in s.followers()
                  if f.error}
        # a failed reload leaves the old version serving: still ready, but say so
        return Response.json({"ready": True, "models": [s.health() for s in self.served.values()],
                              "reload_errors": errors})

    def _served(self, name: str) -> ServedModel:
        served = self.served.get(name)
        if served is None:
            raise HTTPError(404, f"no model {name!r} is served here; served: "
                                 f"{', '.join(self.served)}", "model")
        return served

    def _loaded(self, req: Request) -> tuple[Loaded, str]:
        served = self._served(req.params["model"])
        wanted = req.params.get("version")
        if wanted is None:
            return served.pick()
        for role, f in served.followers():
            if str(f.current.version) == wanted:
                return f.current, role
        raise HTTPError(404, f"model {served.name!r} version {wanted} is not served; "
                             f"serving: {served.champion.current.version}", "version")

    async def v2_model(self, req: Request) -> Response:
        loaded, _ = self._loaded(req)
        served = self.served[req.params["model"]]
        versions = sorted({f.current.version for _, f in served.followers()})
        response = Response.json(protocol_v2.metadata(served.name, versions, loaded.signature,
                                                      loaded.format))
        response.version = str(loaded.version)
        return response

    async def v2_model_ready(self, req: Request) -> Response:
        loaded, _ = self._loaded(req)
        response = Response.json({"name": req.params["model"], "ready": True})
        response.version = str(loaded.version)
        return response

    async def v1_model(self, req: Request) -> Response:
        loaded, _ = self._loaded(req)
        response = Response.json({"name": req.params["model"], "ready": True})
        response.version = str(loaded.version)
        return response

    # -- scoring ---------------------------------------------------------------------------

    async def _score(self, req: Request, name: str, loaded: Loaded, role: str, raw: dict,
                     protocol: str) -> tuple[Outputs, Checked]:
        start = time.perf_counter()
        served = self.served[name]
        try:
            checked = await self._check(raw, loaded, req.size > OFFLOAD_BYTES)
            try:
                out = await loaded.batcher.submit(checked.columns, checked.rows)
            except RowsRejected as exc:
                self.metrics.rejected(name, exc.rejects.values())
                raise HTTPError(422, _rows_message(exc.rejects, checked.rows)) from None
            except UserError as exc:
                raise HTTPError(422, str(exc)) from None
        except HTTPError as exc:
            self.metrics.errors.labels(name, str(exc.status)).inc()
            if self.prediction_log is not None and getattr(self.prediction_log, "logs_errors",
                                                           False):
                self.prediction_log.put({
                    "model": name, "version": loaded.version, "role": role, "rows": 1,
                    "request_id": req.id, "error": f"{exc.status}: {exc.message}",
                    "latency_ms": (time.perf_counter() - start) * 1000})
            raise
        seconds = time.perf_counter() - start
        version = str(loaded.version)
        self.metrics.observe(name, version, role, protocol, 200, checked.rows, seconds)
        flags = checked.row_flags()
        if flags:
            self.metrics.count(name, version, flags=flags.values())
        state = req.scope.get("state")
        if state is not None:
            state["model"], state["version"] = name, loaded.version
        if self.prediction_log is not None:
            self.prediction_log.put({
                "model": name, "version": loaded.version, "role": role,
                "inputs": checked.columns, "outputs": out, "request_id": req.id,
                "latency_ms": seconds * 1000,
                "warnings": [warning_text(flags.get(i, [])) or None
                             for i in range(checked.rows)] if flags else None})
        if served.shadow is not None:
            task = asyncio.get_running_loop().create_task(
                self._shadow(served.shadow.current, name, checked, req.id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return out, checked

    async def _check(self, raw: dict, loaded: Loaded, large: bool) -> Checked:
        """The request's rows checked by the scoring core; a 422 naming the first row that
        cannot be scored. Many rows are checked in a worker thread, off the event loop."""
        signature = loaded.signature
        try:
            if large:
                checked = await asyncio.to_thread(check, raw, signature, self.policy)
            else:
                checked = check(raw, signature, self.policy)
        except Unreadable as exc:
            raise HTTPError(422, str(exc), exc.field) from None
        first = checked.first_reject()
        if first is not None:
            self.metrics.rejected(loaded.uri.name, checked.rejects.values())
            row, why = first
            where = f"row {row}: " if checked.rows > 1 else ""
            raise HTTPError(422, where + why.message, why.field)
        return checked

    async def _shadow(self, loaded: Loaded, name: str, checked: Checked, request_id: str) -> None:
        start = time.perf_counter()
        try:
            out = await loaded.batcher.submit(checked.columns, checked.rows)
        except Exception as exc:
            self.metrics.errors.labels(name, "shadow").inc()
            log.warning("shadow %s/%s failed on request %s: %s", name, loaded.version,
                        request_id, exc)
            return
        seconds = time.perf_counter() - start
        self.metrics.observe(name, str(loaded.version), "shadow", "shadow", 200, checked.rows,
                             seconds)
        if self.prediction_log is not None:
            self.prediction_log.put({
                "model": name, "version": loaded.version, "role": "shadow",
                "inputs": checked.columns, "outputs": out, "request_id": request_id,
                "latency_ms": seconds * 1000})

    async def _answer(self, encode: Callable[[], Any], loaded: Loaded,
                      checked: Checked) -> Response:
        """The response of a scored request: ``encode()`` gives its body; many rows are
        encoded in a worker thread, off the event loop."""
        if checked.rows > OFFLOAD_ROWS:
            response = await asyncio.to_thread(lambda: Response.json(encode()))
        else:
            response = Response.json(encode())
        response.version = str(loaded.version)
        flags = checked.row_flags()
        if flags:
            text = "; ".join(
                (f"row {i}: " if checked.rows > 1 else "") + "; ".join(f.message for f in row)
                for i, row in sorted(flags.items()))
            response.headers.append((b"modelport-warnings",
                                     text[:1000].encode("ascii", "backslashreplace")))
        return response

    # -- reason codes ----------------------------------------------------------------------

    @staticmethod
    def _explain_count(value: Any, loaded: Loaded) -> int | None:
        """How many reasons a request asks for (None: not asked); a 400 naming ``explain``
        for a value that is not a whole number from 1 to the model's input columns."""
        if value is None:
            return None
        try:
            return reasons.count(value, loaded.signature)
        except UserError as exc:
            raise HTTPError(400, str(exc), "explain") from None

    async def _reasons(self, loaded: Loaded, checked: Checked,
                       k: int | None) -> Reasons | None:
        """The top ``k`` reasons of the checked rows (None when not asked); a 422 saying
        why for a model that cannot explain. The first call finds the version's explaining
        predictor and builds its tables in a worker thread; more than
        :data:`EXPLAIN_INLINE_ROWS` rows are explained there too, off the event loop (a
        large forest takes milliseconds per row)."""
        if k is None:
            return None
        try:
            if loaded._explainer is None:
                await asyncio.to_thread(loaded.explainer)
            explainer = loaded.explainer()
            if checked.rows > EXPLAIN_INLINE_ROWS:
                return await asyncio.to_thread(reasons.top, explainer, checked.columns, k)
            return reasons.top(explainer, checked.columns, k)
        except UserError as exc:
            self.metrics.errors.labels(loaded.uri.name, "422").inc()
            raise HTTPError(422, str(exc), "explain") from None

    async def predict(self, req: Request) -> Response:
        name = req.params["model"]
        loaded, role = self._loaded(req)
        names = loaded.signature.names
        k = self._explain_count(req.query.get("explain"), loaded)
        raw = await req.parse(lambda body: protocol_json.decode_body(body, names))
        out, checked = await self._score(req, name, loaded, role, raw, "json")
        why = await self._reasons(loaded, checked, k)
        signature, version = loaded.signature, loaded.version
        return await self._answer(
            lambda: protocol_json.encode(out, signature, name, version, why), loaded, checked)

    async def v1_predict(self, req: Request) -> Response:
        name = req.params["model"]
        loaded, role = self._loaded(req)
        names = loaded.signature.names
        raw = await req.parse(lambda body: protocol_kserve.decode_body(body, names))
        out, checked = await self._score(req, name, loaded, role, raw, "kserve")
        signature = loaded.signature
        return await self._answer(
            lambda: protocol_kserve.encode(out, signature), loaded, checked)

    async def v2_infer(self, req: Request) -> Response:
        name = req.params["model"]
        loaded, role = self._loaded(req)
        names, headers = loaded.signature.names, req.headers
        request, raw = await req.parse(
            lambda body: protocol_v2.decode_body(body, headers, names))
        k = self._explain_count((request.get("parameters") or {}).get("explain"), loaded)
        out, checked = await self._score(req, name, loaded, role, raw, "v2")
        why = await self._reasons(loaded, checked, k)
        signature, version = loaded.signature, loaded.version
        return await self._answer(
            lambda: protocol_v2.encode(out, signature, name, version, request, req.id, why),
            loaded, checked)

    async def invocations(self, req: Request) -> Response:
        name = req.query.get("model") or req.headers.get("modelport-model") \
            or next(iter(self.served))
        req.params["model"] = name
        loaded, role = self._loaded(req)
        names, content_type = loaded.signature.names, req.content_type
        raw, params = await req.parse(
            lambda body: protocol_mlflow.decode(body, content_type, names))
        k = self._explain_count(params.get("explain"), loaded)
        out, checked = await self._score(req, name, loaded, role, raw, "mlflow")
        why = await self._reasons(loaded, checked, k)
        signature = loaded.signature
        return await self._answer(
            lambda: protocol_mlflow.encode(out, signature, params, why), loaded, checked)

    async def lookup(self, req: Request) -> Response:
        """The stored batch score of an entity, or (``?refresh=true``) a fresh one computed
        from the entity's current row in the feature table."""
        name, entity = req.params["model"], req.params["id"]
        served = self._served(name)
        if req.query.get("refresh", "").lower() in ("1", "true", "yes"):
            return await self._refresh(req, served, entity)
        try:
            from modelport.serve.lookup import lookup
        except ImportError:
            raise HTTPError(501, "lookups are not available in this installation "
                                 "(modelport.serve.lookup is missing)") from None
        if not self.lookup_store:
            raise HTTPError(501, "no lookup store configured; start the server with "
                                 "--lookup-store URL")
        try:
            found = await asyncio.to_thread(lookup, name, entity, store=self.lookup_store)
        except UserError as exc:
            raise HTTPError(404 if isinstance(exc, NotFound) else 422, str(exc)) from None
        if found is None:
            raise HTTPError(404, f"no stored score for {name} id {entity!r}", "id")
        response = Response.json({str(k): v for k, v in found.items()})
        response.version = str(found.get("model_version") or served.champion.current.version)
        return response

    async def _refresh(self, req: Request, served: ServedModel, entity: str) -> Response:
        from modelport.serve.http.features import read_features

        if not self.feature_table:
            raise HTTPError(501, "refresh=true needs a feature table; start the server with "
                                 "--feature-table URL#table")
        loaded, role = served.pick()
        k = self._explain_count(req.query.get("explain"), loaded)
        try:
            raw = await asyncio.to_thread(read_features, self.feature_table, entity,
                                          loaded.signature.names)
        except UserError as exc:
            raise HTTPError(404 if isinstance(exc, NotFound) else 422, str(exc), "id") \
                from None
        out, checked = await self._score(req, served.name, loaded, role, raw, "lookup")
        why = await self._reasons(loaded, checked, k)
        body = protocol_json.encode(out, loaded.signature, served.name, loaded.version, why)
        prediction = body["predictions"][0]
        answer = {"id": entity, "model": served.name, "model_version": loaded.version,
                  "refreshed": True, **prediction, "scored_at": datetime.now(UTC).isoformat()}
        return await self._answer(lambda: answer, loaded, checked)


def create_app(uris: list[str] | str, *, registry: Registry | None = None, max_batch_size: int = 64,
               max_latency_ms: float = 0.0, token: str | None = None,
               token_file: str | None = None, canary: list[str] | None = None,
               shadow: list[str] | None = None, poll_seconds: float = 2.0,
               max_body_bytes: int = 10 * 2**20, unseen_categories: str | None = None,
               out_of_range: str | None = None, strict: bool = False,
               format: str | None = None,
               access_log: bool = True,
               prediction_log: Callable[..., Any] | str | None = None,
               lookup_store: str | None = None, feature_table: str | None = None,
               log_url: str | None = None, log_sample: float = 1.0,
               body_timeout_s: float = 30.0) -> AccessLog | BearerAuth:
    """A plain ASGI app serving the models ``uris`` name (each under its registry name).

    ``canary`` entries look like ``churn@challenger:10`` (10% of ``churn``'s requests go to
    that version); ``shadow`` entries like ``churn@challenger`` (mirrored, logged, never
    answered with). ``prediction_log`` is a callable (or ``module:function``) called off the
    request path with each request's model, version, role, inputs, outputs, request id and
    latency. ``log_url`` (a SQLAlchemy URL with ``#table``) writes each request kept by
    ``log_sample`` to a prediction log instead (:mod:`modelport.monitor.log`), failed
    ones included. A number outside the training range or an unseen category is scored and
    flagged (the ``modelport-warnings`` header, ``modelport_warnings_total``); ``strict``
    (or ``unseen_categories`` / ``out_of_range`` set to ``reject``) answers 422 for such a
    row instead. A request body not complete within ``body_timeout_s`` seconds is
    answered 408. The app runs under any ASGI server;
    :func:`modelport.serve.http.server.run` runs it under uvicorn.
    """
    from modelport.errors import require

    require("orjson", "http", "the web service")
    require("prometheus_client", "http", "the web service")
    if registry is None:
        from modelport.registry import Registry

        registry = Registry()
    policy = InputPolicy.of(strict, unseen_categories, out_of_range)
    if not body_timeout_s > 0:
        raise UserError(f"--body-timeout must be a number of seconds above 0, not "
                        f"{body_timeout_s!r}")
    if isinstance(uris, str):
        uris = [uris]
    if not uris:
        raise UserError("name at least one model to serve (e.g. churn@production)")
    metrics = HttpMetrics()
    batching = {"max_batch_size": max_batch_size, "max_latency_ms": max_latency_ms}

    def following(uri: str | ModelURI, role: str = "champion") -> Follower[Loaded]:
        return follow(uri, registry, batching=batching, fmt=format, on_batch=metrics.batch,
                      poll_seconds=poll_seconds, on_reload=metrics.follower_hook(role))

    served: dict[str, ServedModel] = {}
    for uri in uris:
        f = following(uri)
        if f.name in served:
            raise UserError(f"model {f.name!r} is named twice; serve each model once "
                            "(use --canary or --shadow for a second version)")
        served[f.name] = ServedModel(f.name, f)
    for spec in canary or []:
        target, percent = parse_rollout(spec, "--canary")
        _rollout_target(served, target, "--canary").canary = following(target, "canary")
        served[target.name].canary_percent = percent
    for spec in shadow or []:
        target, _ = parse_rollout(spec, "--shadow")
        _rollout_target(served, target, "--shadow").shadow = following(target, "shadow")
    hook = resolve_hook(prediction_log) if isinstance(prediction_log, str) else prediction_log
    plog: PredictionLog | PredictionLogger | None = (
        PredictionLog(hook, on_drop=metrics.log_dropped.inc) if hook else None)
    if log_url:
        if plog is not None:
            raise UserError("give --log or --prediction-log, not both")
        from modelport.monitor.log import PredictionLogger

        plog = PredictionLogger(log_url, sample=log_sample, source="http",
                                on_drop=metrics.log_dropped.inc)
    app = ModelServer(served, policy=policy, metrics=metrics,
                      max_body_bytes=max_body_bytes, poll_seconds=poll_seconds,
                      prediction_log=plog, lookup_store=lookup_store,
                      feature_table=feature_table, body_timeout_s=body_timeout_s)
    wrapped: Any = AccessLog(app, enabled=access_log)
    if token_file and not token:
        token = read_token(token_file)
    if token:
        wrapped = BearerAuth(wrapped, token)
    wrapped.server = app  # tests and the CLI reach the models through this
    return wrapped


def app_from_settings(settings: ServeSettings, *,
                      registry: Registry | None = None) -> ASGIApp:
    """The app ``settings`` describe: :func:`create_app` with their options and, with
    ``settings.ui``, the operations console mounted under ``/ui`` behind the same token
    (every page, not only the writes). What each ``modelport serve`` worker serves."""
    app: ASGIApp = create_app(list(settings.uris), registry=registry, **settings.app_options())
    if settings.ui:
        import modelport.ui as console

        app = console.mount(app, console.create_app(
            token_file=settings.token_file, log_url=settings.log_url, base="/ui",
            private=bool(settings.token_file)))
    return app


def _rollout_target(served: dict[str, ServedModel], uri: ModelURI, option: str) -> ServedModel:
    if uri.name not in served:
        raise UserError(f"{option} {uri} names a model that is not served; serve "
                        f"{uri.name} too (served: {', '.join(served)})")
    return served[uri.name]


def _rows_message(rejects: dict, rows: int) -> str:
    """A 422's message for rows the model could not score: the first, and how many."""
    row = min(rejects)
    more = f" ({len(rejects)} rows of {rows} could not be scored)" if len(rejects) > 1 else ""
    return (f"row {row}: " if rows > 1 else "") + rejects[row].message + more

