"""Run the fleet's per-recording analyses on dask.distributed (docs/fleet.md).

By default an in-process :class:`distributed.LocalCluster`: one worker
process per core (at most one per recording), one thread each, since a
report is CPU-bound Python holding the GIL. With ``scheduler`` the
analyses go to that cluster's workers (which need anonscope installed).
"""

import logging
import os

from .errors import EXIT_SCHEDULER, AnalyzerError
from .fleet import analyse_one
from .progress import bar, wanted


def run(paths, label_by, scheduler=None, progress=True):
    """(results in ``paths``' order, engine) where engine is ``{"kind":
    "dask", "scheduler", "workers"}``; with ``progress`` a bar on a
    terminal (analyzer/progress.py)."""
    from distributed import Client, LocalCluster, as_completed
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            n = max(1, min(os.cpu_count() or 1, len(paths)))
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        raise AnalyzerError(f"--scheduler {scheduler}: cannot connect ({exc})", EXIT_SCHEDULER) from None
    try:
        engine = {"kind": "dask", "scheduler": client.scheduler.address,
                  "workers": len(client.scheduler_info()["workers"])}
        futures = client.map(analyse_one, paths, label_by=label_by, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results = [None] * len(paths)
        with bar(len(paths), "anonanalyze fleet", "recording", progress and wanted()) as b:
            for future in as_completed(futures):
                results[index[future.key]] = one = future.result()
                b.set_postfix_str(os.path.basename(one["path"]) + (" (error)" if "error" in one else ""))
                b.update()
        return results, engine
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

