"""Exported .onnx detectors in Intel's OpenVINO on the CPU (``pip install 'rockdet[openvino]'``):
the fastest runtime measured on the project's CPUs (docs/BENCHMARKS.md, issue 22). Compiled
models are cached on disk, tiles of one call run side by side in its throughput streams, and
tiles at the model's input size run on a graph fixed to that size."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rockdet.errors import CheckpointError, exception_reason
from rockdet.models.info import ModelInfo
from rockdet.predict.runtimes import METADATA_KEY, Detector, check_graph, exported_info, quantized

log = logging.getLogger(__name__)


class OpenVinoDetector(Detector):
    """An exported detector compiled by OpenVINO for the CPU (on this project's CPU the fastest
    runtime measured, docs/BENCHMARKS.md issue 22). The tiles of one call run as a queue of
    inference requests, as many at once as the compiled model's streams: parts of a detector
    (RoIAlign, NMS, the box decoding) use one thread, so two tiles side by side keep both cores
    busy where one tile with two threads leaves one idle.

    The export takes any image size, but OpenVINO runs a graph of fixed size faster (4 % a tile in
    BF16, 13 % in INT8: its shape arithmetic folds away and its kernels are laid out once). So tiles
    at the model's input size, predict's default tile, run on a graph fixed to it, compiled at the
    first such tile (about half a second, kept in the cache folder like the rest); every other size
    runs on the size-free graph. Which graph runs depends on the tile's size alone, never on the
    images before it: INT8 kernels of the two graphs differ by a few rocks in a hundred.

    Calls from several threads run one after another: a call holds the detector until its tiles
    are done (its request queues and their callbacks are shared)."""

    def __init__(self, compiled, info: ModelInfo, compile_fixed: Callable[[tuple[int, ...]], object] | None = None):
        super().__init__(info, info.head)
        self.compiled = compiled
        self.output_names = [output.get_any_name() for output in compiled.outputs]
        try:
            self.requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # an OpenVINO that does not report it
            self.requests = 1
        #: The tile shape that runs on a fixed-size graph (None: every tile runs size-free).
        self.fixed_shape = (3, info.input_size, info.input_size) if compile_fixed is not None else None
        self._compile_fixed = compile_fixed
        self._fixed = None
        self._queues: dict[str, object] = {}
        self._running = threading.Lock()

    def compiled_for(self, shape: tuple[int, ...]):
        """The compiled graph that runs tiles of ``shape``."""
        if shape != self.fixed_shape:
            return self.compiled
        if self._fixed is None:
            try:
                self._fixed = self._compile_fixed(shape)
            except Exception as exc:  # a graph OpenVINO cannot fix to this size still runs size-free
                log.warning("OpenVINO: no graph fixed to %s (%s); its tiles run on the size-free one", shape,
                            exception_reason(exc))
                self._fixed = self.compiled
            self._compile_fixed = None  # it holds the read model and its weights: done with them
        return self._fixed

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        arrays = [np.ascontiguousarray(image.detach().float().cpu().numpy()) for image in images]
        results: list[dict[str, torch.Tensor] | None] = [None] * len(arrays)
        with self._running:
            by_graph: dict[int, tuple[object, list[int]]] = {}
            for index, array in enumerate(arrays):
                compiled = self.compiled_for(array.shape)
                by_graph.setdefault(id(compiled), (compiled, []))[1].append(index)
            for compiled, indices in by_graph.values():
                if len(indices) == 1 or self.requests == 1:
                    for index in indices:
                        results[index] = self._outputs(compiled, compiled(arrays[index]))
                else:
                    self._run_queue(compiled, arrays, indices, results)
        missing = [index for index, result in enumerate(results) if result is None]
        if missing:
            raise RuntimeError(f"OpenVINO returned no detections for tile(s) {missing} of {len(arrays)}")
        return results

    def _run_queue(self, compiled, arrays: list[np.ndarray], indices: list[int],
                   results: list[dict[str, torch.Tensor] | None]) -> None:
        import openvino

        graph = "size-free" if compiled is self.compiled else "fixed"
        queue = self._queues.get(graph)
        if queue is None:
            queue = self._queues[graph] = openvino.AsyncInferQueue(compiled, self.requests)

        def done(request, index):
            # The request's buffers are reused by the next tile: copy the outputs out now.
            results[index] = {name: torch.from_numpy(np.array(request.get_output_tensor(position).data))
                              for position, name in enumerate(self.output_names)}

        queue.set_callback(done)
        for index in indices:
            queue.start_async(arrays[index], index)
        queue.wait_all()

    def _outputs(self, compiled, values) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(np.asarray(values[output]))
                for name, output in zip(self.output_names, compiled.outputs)}

    def describe(self) -> str:
        # OpenVINO computes in BF16 by default on a CPU with BF16 instructions: the catalogs say so.
        try:
            precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        except Exception:  # an OpenVINO that does not report it
            return f"OpenVINO CPU{quantized(self.info)}"
        return f"OpenVINO CPU, {precision}{quantized(self.info)}"


def load_openvino(path: Path, threads: int | None, fixed_size: bool = True) -> OpenVinoDetector:
    try:
        import onnx
        import openvino
    except ImportError:
        raise CheckpointError(f"{path}: running ONNX models in OpenVINO needs it: "
                              f"pip install 'rockdet[openvino]'") from None
    try:
        document = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable ONNX model ({exception_reason(exc)})") from None
    info = exported_info(path, next((entry.value for entry in document.metadata_props if entry.key == METADATA_KEY), ""))
    core = openvino.Core()
    # Throughput streams (one per core here) run tiles side by side: see OpenVinoDetector.
    config = {"PERFORMANCE_HINT": "THROUGHPUT", **({"INFERENCE_NUM_THREADS": threads} if threads else {})}
    cache = openvino_cache_dir()
    if cache is not None:  # the compiled model is kept there and reused by the next load of the same file
        config["CACHE_DIR"] = str(cache)
    try:
        # From the read model, not the path: the cache is then keyed by the graph and its weights,
        # so a file exported again under the same name is never served an old compiled model.
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", config)
    except Exception as exc:
        raise CheckpointError(f"{path}: OpenVINO cannot compile it ({exception_reason(exc)})") from None
    check_graph(path, [i.get_any_name() for i in compiled.inputs], [o.get_any_name() for o in compiled.outputs], info)
    input_name = compiled.inputs[0].get_any_name()

    def compile_fixed(shape: tuple[int, ...]):
        fixed = model.clone()
        fixed.reshape({input_name: openvino.PartialShape(list(shape))})
        return core.compile_model(fixed, "CPU", config)

    return OpenVinoDetector(compiled, info, compile_fixed if fixed_size else None)


#: Where compiled OpenVINO models are cached: $ROCKDET_CACHE_DIR, else $XDG_CACHE_HOME/rockdet
#: (~/.cache/rockdet), in an ``openvino`` folder. ROCKDET_CACHE_DIR=off turns the cache off.
CACHE_ENV = "ROCKDET_CACHE_DIR"


def openvino_cache_dir() -> Path | None:
    """The folder OpenVINO keeps compiled models in (made if missing), or None when turned off or
    not writable (a read-only home on a cluster node: compiling each time is slower, not wrong)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None and chosen.lower() in ("", "off", "none", "0"):
        return None
    base = Path(chosen).expanduser() if chosen else \
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "rockdet"
    folder = base / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("%s: cannot hold OpenVINO's compiled models (%s); compiling without a cache", folder,
                    exc.strerror or exc)
        return None
    return folder
