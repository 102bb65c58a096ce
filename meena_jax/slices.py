"""Cloud TPU slices as the launcher spells them (``v3-32``, ``v4-128``, ``v5litepod-256``): how
many JAX devices and hosts, each device's HBM and bf16 peak, and the slice's devices as a
compile-only topology on a machine without a TPU (``topology_devices``, needs libtpu).

Facts (Cloud TPU system-architecture pages for v2/v3, v4, v5e and v5p):
- v2-N, v3-N: N TensorCores, 2 per chip, one JAX device per core, 8 cores per host
  (v3-32: 32 devices on 4 hosts). HBM 8 GiB (v2) / 16 GiB (v3) per core; bf16 peak 22.5 (v2)
  / 61.5 (v3) TFLOP/s per core. Chips form a 2-D grid (v3-2048: 32 x 32, a torus).
- v4-N, v5p-N: N TensorCores, 2 per chip fused as one megacore device, so N/2 JAX devices,
  4 chips per host (v4-32: 16 devices on 4 hosts); a 3-D grid (v4-128: 4 x 4 x 4, a torus).
  HBM 32 GiB (v4) / 95 GB (v5p) per chip; bf16 peak 275 (v4) / 459 (v5p) TFLOP/s per chip.
- v5litepod-N (also spelt v5e-N): N chips of one TensorCore, one device each, up to 8 chips per
  host (v5litepod-16: 16 devices on 2 hosts; -1, -4 and -8 are one host); a 2-D grid.
  16 GiB and 197 bf16 TFLOP/s per chip.
"""
import dataclasses
import importlib.util
import math
import os
import re
from typing import Optional

GIB = 2 ** 30
LIBTPU_MISSING = ("libtpu is not installed, so nothing can be compiled for a TPU here: "
                  "pip install -e '.[tpu]' (jax[tpu] at the pinned jax)")


@dataclasses.dataclass(frozen=True)
class Generation:
  """What an accelerator type's number counts and how that maps to JAX devices and hosts."""
  name: str                   # As the topology names it (v5litepod -> v5e).
  counts: str                 # What N in "<generation>-N" counts.
  device: str                 # What one JAX device is.
  devices_per_unit: float     # JAX devices per counted unit (0.5: two cores make one megacore).
  devices_per_host: int
  hbm_gib: float              # Per JAX device.
  peak_tflops: float          # bf16 per JAX device.
  chips_per_unit: float       # Chips per counted unit.
  grid_dims: int              # 2-D or 3-D chip grid.
  runtime_version: str        # Default TPU VM image.
  sizes: Optional[tuple] = None  # Allowed N; None: any multiple of 8.
  max_size: int = 0
  megacore: bool = False

  @property
  def pod_chips(self) -> int:
    """Chips of the largest slice (whose grid wraps around as a torus)."""
    return int((max(self.sizes) if self.sizes else self.max_size) * self.chips_per_unit)


GENERATIONS = {
    "v2": Generation("v2", "TensorCores", "TensorCore", 1, devices_per_host=8, hbm_gib=8,
                     peak_tflops=22.5, chips_per_unit=0.5, grid_dims=2,
                     runtime_version="tpu-ubuntu2204-base", sizes=(8, 32, 128, 256, 512)),
    "v3": Generation("v3", "TensorCores", "TensorCore", 1, devices_per_host=8, hbm_gib=16,
                     peak_tflops=61.5, chips_per_unit=0.5, grid_dims=2,
                     runtime_version="tpu-ubuntu2204-base",
                     sizes=(8, 32, 64, 128, 256, 512, 1024, 2048)),
    "v4": Generation("v4", "TensorCores", "megacore chip", 0.5, devices_per_host=4, hbm_gib=32,
                     peak_tflops=275, chips_per_unit=0.5, grid_dims=3,
                     runtime_version="tpu-ubuntu2204-base", max_size=8192, megacore=True),
    "v5p": Generation("v5p", "TensorCores", "megacore chip", 0.5, devices_per_host=4,
                      hbm_gib=95e9 / GIB, peak_tflops=459, chips_per_unit=0.5, grid_dims=3,
                      runtime_version="v2-alpha-tpuv5", max_size=12288, megacore=True),
    "v5litepod": Generation("v5e", "chips", "chip", 1, devices_per_host=8, hbm_gib=16,
                            peak_tflops=197, chips_per_unit=1, grid_dims=2,
                            runtime_version="v2-alpha-tpuv5-lite",
                            sizes=(1, 4, 8, 16, 32, 64, 128, 256)),
}


@dataclasses.dataclass(frozen=True)
class Slice:
  accelerator_type: str  # As gcloud spells it.
  generation: Generation
  size: int

  @property
  def devices(self) -> int:
    return int(self.size * self.generation.devices_per_unit)

  @property
  def hosts(self) -> int:
    return max(1, self.devices // self.generation.devices_per_host)

  @property
  def chips(self) -> int:
    return int(self.size * self.generation.chips_per_unit)

  @property
  def hbm_bytes(self) -> float:
    return self.generation.hbm_gib * GIB

  @property
  def peak_flops(self) -> float:
    """bf16 FLOP/s of one JAX device."""
    return self.generation.peak_tflops * 1e12

  def grid(self) -> tuple:
    """The chip grid: start from one chip (2-D) or a 2 x 2 x 1 host (3-D) and double the last
    of the smallest dimensions, which gives every published shape (v3-32: 4 x 4, v3-2048:
    32 x 32, v4-8: 2 x 2 x 1, v4-128: 4 x 4 x 4, v5litepod-8: 2 x 4)."""
    chips = self.chips
    if chips & (chips - 1):
      raise ValueError(f"{self.accelerator_type}: {chips} chips is not a power of two; give "
                       f"the topology explicitly (e.g. --topology=v4:2x2x3)")
    dims = [1, 1] if self.generation.grid_dims == 2 else [2, 2, 1]
    while math.prod(dims) < chips:
      smallest = min(dims)
      last = max(i for i, d in enumerate(dims) if d == smallest)
      dims[last] *= 2
    return tuple(dims)

  def topology_name(self) -> str:
    """``v3:4x4``, ``v4:2x2x1``: what ``get_topology_desc`` takes."""
    return f"{self.generation.name}:" + "x".join(map(str, self.grid()))


def parse_accelerator(text: str) -> Slice:
  """``v3-32`` -> its Slice; an unknown generation or size raises ``ValueError`` naming
  ``--accelerator_type``."""
  match = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v5e)-(\d+)", text)
  if not match:
    raise ValueError(f"--accelerator_type={text}: expected v2-N, v3-N, v4-N, v5p-N or "
                     f"v5litepod-N (v5e-N)")
  name = "v5litepod" if match[1] == "v5e" else match[1]
  generation, size = GENERATIONS[name], int(match[2])
  if generation.sizes and size not in generation.sizes:
    raise ValueError(f"--accelerator_type={text}: {name} slices have "
                     f"{', '.join(map(str, generation.sizes))} {generation.counts}")
  if not generation.sizes and (size % 8 or not 8 <= size <= generation.max_size):
    raise ValueError(f"--accelerator_type={text}: {name} slices have a multiple of 8 "
                     f"{generation.counts}, 8 to {generation.max_size}")
  return Slice(f"{name}-{size}", generation, size)


def libtpu_available() -> bool:
  return importlib.util.find_spec("libtpu") is not None


def quiet_libtpu():
  """On a machine with libtpu but no TPU attached (a workstation with the ``[tpu]`` extra):
  let several processes load libtpu (test workers, a launcher beside a compile), and name a
  placeholder attached slice, so that jax's backend start-up does not print a screen of libtpu
  warnings about a metadata server it cannot reach, and falls back to the CPU quietly.
  Compile-only devices come from the topology asked for, never from these settings; a TPU
  VM's own settings are left alone. Call before jax starts its backends (the CLI edge does)."""
  if not libtpu_available():
    return
  if os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0"):
    return
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v4-8")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")


def topology_devices(slice_: Slice, topology: Optional[str] = None) -> list:
  """The slice's JAX devices as compile-only TPU devices (nothing can run on them): a mesh
  over them compiles real TPU programs on this machine. ``topology`` (``v4:2x2x3``) overrides
  the grid derived from the accelerator type. Raises ``RuntimeError`` when libtpu is
  missing."""
  if not libtpu_available():
    raise RuntimeError(LIBTPU_MISSING)
  quiet_libtpu()
  from jax.experimental import topologies  # pylint: disable=import-outside-toplevel
  generation = slice_.generation
  name = topology or slice_.topology_name()
  grid = tuple(int(d) for d in name.split(":")[1].split("x"))
  grid3 = grid + (1,) * (3 - len(grid))
  chips_per_host = generation.devices_per_host * generation.chips_per_unit / (
      generation.devices_per_unit)
  host_bounds = ((2, 4, 1) if chips_per_host >= 8 and math.prod(grid) >= 8 else
                 (2, 2, 1) if math.prod(grid) >= 4 else (1, 1, 1))
  # Only a whole pod's grid wraps around (v3-2048, v4 in multiples of 4 x 4 x 4).
  torus = (math.prod(grid) == generation.pod_chips if generation.grid_dims == 2
           else all(d % 4 == 0 for d in grid))
  devices = topologies.get_topology_desc(
      topology_name=name, platform="tpu",
      chip_config_name="megacore" if generation.megacore else "default",
      chips_per_host_bounds=host_bounds, num_slices=1,
      wrap=tuple(torus and d > 1 for d in grid3)).devices
  if topology is None and len(devices) != slice_.devices:
    raise RuntimeError(f"{slice_.accelerator_type}: the topology {name} gave {len(devices)} "
                       f"devices, expected {slice_.devices}")
  return devices
