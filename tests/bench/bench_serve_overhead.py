"""What Ray Serve itself costs a request on this machine, with no model: the floor under the melody service.

Deploys a trivial application shaped like the melody service (a FastAPI
ingress in front of a second deployment whose method goes through
``@serve.batch`` and a worker thread, as ``StyleGenerator`` does) and times,
interleaved, GET requests over loopback HTTP that stop at each layer:

- ``ingress``: proxy + ingress replica (what ``/healthz`` costs);
- ``hop``: the same plus one ``DeploymentHandle`` call to the second deployment;
- ``batched``: the same plus ``@serve.batch`` (1 ms wait) and ``asyncio.to_thread``.

    python tests/bench/bench_serve_overhead.py [--requests 300] [--port 18001]
"""

import argparse
import asyncio
import json
import statistics
import time

import ray
import requests
from fastapi import FastAPI
from ray import serve

api = FastAPI()


@serve.deployment
class Inner:
    async def plain(self, x: int) -> int:
        return x

    async def batched(self, x: int) -> int:
        return await self._batch(x)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.001)
    async def _batch(self, xs: list[int]) -> list[int]:
        return await asyncio.to_thread(list, xs)


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, inner):
        self.inner = inner

    @api.get("/ingress")
    async def ingress(self) -> dict:
        return {"x": 1}

    @api.get("/hop")
    async def hop(self) -> dict:
        return {"x": await self.inner.plain.remote(1)}

    @api.get("/batched")
    async def batched(self) -> dict:
        return {"x": await self.inner.batched.remote(1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="per path, interleaved")
    parser.add_argument("--port", type=int, default=18001)
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    try:
        serve.run(Ingress.bind(Inner.bind()), name="overhead", route_prefix="/")
        session, paths = requests.Session(), ("ingress", "hop", "batched")

        def get(path: str) -> float:
            started = time.perf_counter()
            session.get(f"http://127.0.0.1:{args.port}/{path}").raise_for_status()
            return 1000 * (time.perf_counter() - started)

        for _ in range(30):  # warm-up
            for path in paths:
                get(path)
        ms: dict[str, list[float]] = {path: [] for path in paths}
        for _ in range(args.requests):
            for path in paths:
                ms[path].append(get(path))
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps({f"{path}_p50_ms": round(statistics.median(v), 2) for path, v in ms.items()}))


if __name__ == "__main__":
    main()
