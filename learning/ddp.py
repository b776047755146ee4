"""Data-parallel training of one job over several devices: `gpus` = N > 1 (docs/training.md).

The runner's process (the *parent*) keeps what it always keeps — the lease, the heartbeat, and
watching for a cancel, a pause, a lost lease or a shutdown — and launches the N ranks with
`torchrun` (`python -m torch.distributed.run --standalone --nproc_per_node=N -m learning.ddp_rank`):

* each rank sets Django up, joins the process group (NCCL on CUDA, one GPU per rank; gloo on the
  CPU when QIG_DDP_ON_CPU is on), wraps the module it trains (the trunk, or the kernel's adapter)
  in `DistributedDataParallel` and trains its shard of the data (step s of rank r: batch
  s · N + r), so gradients are averaged over N batches per step;
* rank 0 alone writes: checkpoints, the metric history, learning events, models on disk, kernel
  rows — and its telemetry goes to a file the parent relays onto the websocket (the embedded
  mode's channel layer lives in the parent's memory);
* after every step the ranks agree with rank 0 (a broadcast): stop now (a cancel, a pause, a guard
  or the parent gone), the learning rate scale a guard set, and — when a guard changed weights —
  rank 0's weights;
* rank 0 writes the run's outcome to `outcome.json`, which the parent turns into the job's.

To stop a run the parent writes `STOP` (the reason) in the run's directory: rank 0 sees it at its
next step, all ranks stop at that same step and rank 0 saves a checkpoint there. Should the group
not be gone `QIG_DDP_STOP_GRACE_S` later, the parent terminates it (the last periodic checkpoint
stays). A rank whose parent died stops by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch
from django.conf import settings
from torch import nn

from constellation.engine import Action, Callback, StepInfo, Trainer
from dashboard.services import publish
from learning import devices
from learning.models import FineTuneJob
from learning.recorder import RunInfo
from learning.runs import (
    InvalidJob,
    Outcome,
    Rank,
    completed,
    job_checkpoint_dir,
    job_hyperparameters,
)
from learning.training import train_rank

log = logging.getLogger(__name__)

STOP_GRACE_S = float(os.environ.get("QIG_DDP_STOP_GRACE_S", "10"))
POLL_S = 0.1
EXIT_GRACE_S = 1.0  # after rank 0 wrote the outcome, for the group to exit by itself
PARENT_DIED = "the runner that launched this run is gone"


def run_dir(job_id: int) -> Path:
    return job_checkpoint_dir(job_id) / "ddp"


# ---- the parent: launching and watching the group --------------------------------------------
def launch(job: FineTuneJob, hp: dict[str, Any], run: RunInfo) -> Outcome:
    """Run the job's ranks under torchrun and wait for them, relaying their telemetry and
    passing on a stop request. Returns the run's outcome (as `training.train_rank` does)."""
    world = int(hp["gpus"])
    local = devices.parts(run.device)
    env = {**os.environ, "QIG_DDP_PARENT_PID": str(os.getpid())}
    if local == [devices.CPU]:
        if not settings.DDP_ON_CPU:
            raise InvalidJob(
                f"gpus={world} asks for {world} GPUs and this node trains on the CPU "
                "(set QIG_DDP_ON_CPU=1 to run the ranks as gloo processes on the CPU)"
            )
        threads = settings.TRAIN_THREADS or max(1, ((os.cpu_count() or 1) - 1) // world)
        env["QIG_TRAIN_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    else:
        if len(local) < world:
            raise InvalidJob(
                f"gpus={world} but this node has {devices.gpu_count()} GPU(s) to train on"
            )
        env["CUDA_VISIBLE_DEVICES"] = ",".join(_physical(d) for d in local)
    directory = run_dir(job.pk)
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("STOP", "outcome.json", "telemetry.jsonl"):
        (directory / name).unlink(missing_ok=True)
    (directory / "telemetry.jsonl").touch()
    command = [
        sys.executable,
        *("-m", "torch.distributed.run", "--standalone", "--nnodes=1"),
        f"--nproc_per_node={world}",
        *("-m", "learning.ddp_rank", str(job.pk), run.lease, run.device, str(run.total_steps)),
    ]
    log.info("job %s: launching %s ranks on %s", job.pk, world, run.device)
    with (directory / "ranks.log").open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=settings.BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: terminated as one
        )
        try:
            _watch(process, run, directory)
        finally:
            if process.poll() is None:  # e.g. the runner is raising: leave no rank behind
                _terminate(process)
    return _outcome(job, process.returncode, directory)


def _physical(device: str) -> str:
    """The physical index of a visible CUDA device (CUDA_VISIBLE_DEVICES may renumber)."""
    index = int(device.split(":")[1])
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v]
    return visible[index] if index < len(visible) else str(index)


def _watch(process: subprocess.Popen[bytes], run: RunInfo, directory: Path) -> None:
    stop_file = directory / "STOP"
    stop_sent: float | None = None
    finished: float | None = None
    with (directory / "telemetry.jsonl").open("rb") as telemetry:
        while True:
            exited = process.poll() is not None
            _relay(telemetry)
            if exited:
                return
            if finished is None and (directory / "outcome.json").is_file():
                finished = time.monotonic()
            elif finished is not None and time.monotonic() - finished > EXIT_GRACE_S:
                _terminate(process)  # rank 0 is done; torchrun's own teardown takes seconds
            reason = run.should_stop()
            if reason and stop_sent is None:
                tmp = directory / ".STOP.tmp"
                tmp.write_text(reason)
                os.replace(tmp, stop_file)
                stop_sent = time.monotonic()
            elif stop_sent is not None and time.monotonic() - stop_sent > STOP_GRACE_S:
                log.warning("job %s: the ranks did not stop in time: terminating", run.job_id)
                _terminate(process)
            time.sleep(POLL_S)


def _relay(telemetry: BinaryIO) -> None:
    """Publish what rank 0 sent since the last look (one JSON line per message)."""
    while line := telemetry.readline():
        if not line.endswith(b"\n"):  # half written: read it again next time
            telemetry.seek(-len(line), os.SEEK_CUR)
            return
        try:
            message = json.loads(line)
            publish(message["topic"], message["payload"])
        except Exception:
            log.warning("could not relay telemetry from rank 0", exc_info=True)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _outcome(job: FineTuneJob, code: int | None, directory: Path) -> Outcome:
    path = directory / "outcome.json"
    if not path.is_file():
        tail = _tail(directory / "ranks.log")
        raise RuntimeError(f"the ranks exited with {code} and no outcome:\n{tail}")
    data = json.loads(path.read_text())
    if data.get("invalid"):
        raise InvalidJob(data["invalid"])
    if data.get("error"):
        raise RuntimeError(data["error"])
    if data["status"] == "completed":
        return completed(job, data["summary"], data["message"])
    return Outcome(data["status"], data.get("reason", ""))


def _tail(path: Path, size: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return ""


# ---- a rank ----------------------------------------------------------------------------------
class RankSync(Callback):
    """Last callback of every rank's trainer: after each step the ranks adopt rank 0's decision
    to stop, its learning-rate scale, and (when a guard acted) its weights."""

    def __init__(self, rank: int, world: int, device: str) -> None:
        self.rank, self.world, self.device = rank, world, device
        self.acted = False  # rank 0: a guard returned actions at this step
        self.ranks: list[dict[str, Any]] = []

    def on_train_start(self, trainer: Trainer) -> None:
        import torch.distributed as dist

        me = {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname()}
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, {**me, "device": self.device})
        self.ranks = gathered

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        import torch.distributed as dist

        stopping = trainer._stop_reason is not None
        state = torch.tensor(
            [float(stopping), trainer.lr_scale, float(self.acted)],
            dtype=torch.float64,
            device=self.device,
        )
        dist.broadcast(state, src=0)
        self.acted = False
        stop, lr_scale, acted = state.tolist()
        trainer.lr_scale = lr_scale
        if stop and not stopping:
            trainer.request_stop("rank 0 stopped the run")
        if acted:  # a guard changed rank 0's weights (sleep, mushroom): everyone takes them
            with torch.no_grad():
                for parameter in trainer.module.parameters():
                    dist.broadcast(parameter.data, src=0)
        return []

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None  # nothing of its own to restore (ranks > 0 skip rank 0's callbacks' state)


class NotedGuard(Callback):
    """Rank 0's guard, noting for `RankSync` whether it acted at this step."""

    def __init__(self, inner: Callback, sync: RankSync) -> None:
        self.inner, self.sync = inner, sync

    def on_train_start(self, trainer: Trainer) -> None:
        self.inner.on_train_start(trainer)

    def on_step_end(self, trainer: Trainer, info: StepInfo) -> list[Action]:
        actions = self.inner.on_step_end(trainer, info)
        if actions:
            self.sync.acted = True
        return actions

    def on_action(self, trainer: Trainer, action: Action) -> None:
        self.inner.on_action(trainer, action)

    def on_train_end(self, trainer: Trainer, result: Any) -> None:
        self.inner.on_train_end(trainer, result)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


class RelayLayer:
    """Rank 0's channel layer: every telemetry message becomes a line the parent publishes."""

    extensions: list[str] = []

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        payload = message.get("payload")
        if payload is None:  # the client's frame, encoded once by dashboard.services
            payload = json.loads(message["text"])["payload"]
        line = json.dumps({"topic": message["topic"], "payload": payload}) + "\n"
        with self.lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)


def _stop_reason(stop_file: Path, parent: int) -> str | None:
    if stop_file.is_file():
        return stop_file.read_text().strip() or "stopped"
    if parent and not _alive(parent):  # e.g. kill -9 of the worker: stop, checkpoint, exit
        return PARENT_DIED
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _process_group(backend: str) -> Iterator[None]:
    import torch.distributed as dist

    dist.init_process_group(backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def main(argv: list[str]) -> int:
    """One rank (under torchrun, Django set up): `python -m learning.ddp_rank <job> <lease>
    <devices> <total steps>`."""
    job_id, lease, run_device, total = int(argv[0]), argv[1], argv[2], int(argv[3])
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    from channels.layers import channel_layers
    from django.db import connection

    on_cpu = devices.parts(run_device) == [devices.CPU]
    device = "cpu" if on_cpu else f"cuda:{local_rank}"
    if not on_cpu:
        torch.cuda.set_device(local_rank)
    if settings.TRAIN_THREADS:
        torch.set_num_threads(settings.TRAIN_THREADS)
    directory = run_dir(job_id)
    parent = int(os.environ.get("QIG_DDP_PARENT_PID", "0"))
    _say(f"rank {rank}/{world}: pid {os.getpid()} on {device}")
    result: dict[str, Any]
    with _process_group("gloo" if on_cpu else "nccl"):
        sync = RankSync(rank, world, device)
        ddp_wrap = _wrapper(device)
        this = Rank(
            rank=rank,
            world=world,
            device=device,
            callbacks=(sync,),
            wrap=ddp_wrap,
            guard=lambda inner: NotedGuard(inner, sync),
        )
        if rank == 0:
            channel_layers.set("default", RelayLayer(directory / "telemetry.jsonl"))
        stop_file = directory / "STOP"
        job = FineTuneJob.objects.get(pk=job_id)
        run = RunInfo(
            job_id, lease, job.kind, run_device, total, lambda: _stop_reason(stop_file, parent)
        )
        try:
            hp = job_hyperparameters(job)
            outcome = train_rank(job, hp, run, this)
            result = {"status": outcome.status, "reason": outcome.reason}
            if outcome.status == "completed" and outcome.summary is not None:
                backend = "gloo" if on_cpu else "nccl"
                ddp = {"world_size": world, "backend": backend, "ranks": sync.ranks}
                result.update(summary={**outcome.summary, "ddp": ddp}, message=outcome.message)
        except InvalidJob as exc:
            result = {"status": "failed", "invalid": str(exc)}
        except Exception as exc:
            log.exception("rank %s crashed", rank)
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        finally:
            connection.close()
    _say(f"rank {rank}/{world}: {result['status']} {result.get('reason', '')}")
    if rank == 0:
        tmp = directory / ".outcome.tmp"
        tmp.write_text(json.dumps(result))
        os.replace(tmp, directory / "outcome.json")
    _say(f"rank {rank}/{world}: exits")
    return 0 if "error" not in result else 1


def _say(line: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)


def _wrapper(device: str) -> Any:
    from torch.nn.parallel import DistributedDataParallel

    def wrap(module: nn.Module) -> nn.Module:
        if device == "cpu":
            return DistributedDataParallel(module)
        index = torch.device(device).index
        return DistributedDataParallel(module, device_ids=[index], output_device=index)

    return wrap
