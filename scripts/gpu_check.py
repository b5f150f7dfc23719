"""memsweep on one GPU, in one command: is each speed option correct, how fast is it, and what do the paper's
sweeps cost in GPU-hours. No network, no dataset: it writes random CIFAR-shaped data itself.

On a GPU machine (sized to finish in under 8 minutes on one H100/H200; --budget-s, default 450 s, stops starting
parts and measurements when the time nears it, and says which it skipped):

    PYTHONPATH=src python scripts/gpu_check.py --out benchmarks/$(date +%F)-gpu.json

On a CPU (what the tests run: every part with tiny sizes, about a minute):

    PYTHONPATH=src python scripts/gpu_check.py --cpu-smoke --out /tmp/gpu_check.json

Other options: --peak-tflops X (the bf16 peak to compare against, when the GPU is not in memsweep.sweeps.gpus.GPUS,
whose figures are NVIDIA's data-sheet dense peaks, e.g. 989.4 for an H100/H200 SXM, or runs at other clocks),
--only correctness,speed,... (some parts), --merge FILE (below), --device cuda:1.

Everything goes through memsweep's own code: runs are train.Run objects composed by memsweep's config code
(+experiment=paper_cifar10 on CIFAR-10 python batches of random images written to a temp folder), steps are
train.SoloStep / packed.PackedStep, samples come from the run's Evaluator. The numbers (all in the JSON, the
table prints the main ones; ratios are measured in the same run):

correctness   a short run of paper_cifar10's U-Net (B=128, 32x32, 25 steps, same seed hence the same batches)
              trained five ways: float32 (plain: no channels-last, unfused Adam, eager), bfloat16 autocast,
              channels-last, fused Adam, torch.compile. Every run starts from the seed's weights plus the same
              small random change (scale 0.02): the U-Net's zero-initialized output layers would otherwise leave
              the first steps' losses and most gradients independent of the network (with it, the network's
              output is ~10% of its initial loss). `max_rel_diff`: the largest |loss - loss_fp32| / loss_fp32
              over the steps; each check passes within its stated tolerance (bf16: 5e-2; the float32 options:
              1e-3 on a CPU, 1e-2 on CUDA, where float32 convolutions run as TF32 by default and cuDNN picks
              other algorithms for another layout). `weights_rel_diff`: ||w - w_fp32|| / ||w_fp32|| after the
              run (information). `compile_s`: the first compiled step's time minus an eager step's (dynamo +
              inductor, cold).
speed         that U-Net at B=16 (the paper's), 128 and 512, options stacked: fp32, fp32+fused (memsweep's
              runtime defaults), bf16, bf16+channels-last, +fused Adam, +compile (at 128 and 512). steps/s and
              images/s (synchronized, after warm-up), FLOP/s = FlopCounterMode's count of one step x steps/s, its
              fraction of the GPU's dense bf16 peak (the roof for every option, fp32 included),
              torch.cuda.max_memory_allocated.
pack          K tiny digits models (K = 1, 4, 16, 64) as one packed.PackedStep: model-steps/s (K x steps/s),
              and FLOP/s crediting the pack K single-model steps' FLOPs (torch's counter ignores `groups` in a
              convolution's weight gradient, so counting the pack itself would overcount), against one run
              trained alone (train.SoloStep).
evaluation    the paper's protocol (eval.num_samples and eval.sampler_steps of paper_cifar10): sampling
              by the Evaluator (float32, as memsweep samples) and its FLOP/s; the fixed losses and the field
              probe of one evaluation; the Evaluator's own mem_metrics (NN vs its n training images + bootstrap);
              nearest_neighbours of 10,000 samples against 50,000 random 3x32x32 images on the device; the
              report's novelty_row (first call, which computes the real images' radii, and a second one with
              them cached) on the device; and, if time is left, sampling under bf16 autocast (not memsweep's
              path: a what-if). If the budget cannot fit all the samples, fewer are timed and scaled (said so).
scaling       one run on K GPUs (runtime.processes=K: DDP, nccl) at the global batch of 512, K = 1, 2, 4, 8 up to
              the GPUs here: steps/s, the speedup over K = 1 and the scaling efficiency (speedup / K); one line
              saying it is skipped on a machine with one GPU or none (--cpu-smoke: K = 1, 2 on the CPU, gloo).
sweeps        GPU-hours of configs/sweep/{dataset_size,model_size,batch_size,learning_rate}.yaml: each run
              composed by memsweep.sweeps.spec.expand (with data.root pointing at the temp folder, which validation
              needs) for its total steps, batch size, model and evaluation schedule. Training time: the step's
              FLOPs (counted on the meta device for every model) over the FLOP/s measured for the timed model
              at the nearest batch sizes (log-interpolated; exact for the timed U-Net at 16, 128 and 512,
              "scaled" otherwise), for memsweep's runtime defaults (fp32, fused Adam) and for the option fastest
              at the run's batch size (bf16 is a different run: a what-if). Evaluation time: the measured
              sampling, losses and NN per evaluation, scaled by forward FLOPs, samples and n, times the number of
              evaluations (Inception FID/SW excluded: their weights are not here; so are the samples generated
              beyond eval.num_samples for FID, eval.fid_samples). One GPU per run, no packing, checkpoints not
              counted.

A part (or one option within it) that fails is reported as an error string; the others still run. What the
budget made it skip is listed at the end (parts, and measurements within parts) and in the JSON. The JSON is
rewritten after each part, so a run cut short keeps what it measured; --merge FILE keeps an earlier run's
parts that are not run now (e.g. --only sweeps --merge earlier.json recomputes the GPU-hours).
--cpu-smoke: the same parts with tiny sizes (tiny U-Net with attention, 16x16 synthetic data, a handful of
steps, K = 1, 2, 32 samples); compile uses the aot_eager backend there (inductor took ~3 minutes on a 2-core CPU),
at the first batch size only.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from memsweep.data.datasets import make_synthetic_cifar
from memsweep.sweeps.gpus import of_device, rates

from gpucheck.context import Clock, Ctx, GPU_SIZES, PARTS, SMOKE_SIZES, error_string, free
from gpucheck.correctness import part_correctness
from gpucheck.evaluation import part_evaluation
from gpucheck.pack import part_pack
from gpucheck.scaling import part_scaling
from gpucheck.speed import part_speed
from gpucheck.sweeps import part_sweeps
from gpucheck.table import fmt, print_table


def peak_flops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """The device's dense bf16 peak (the roof of every option) in FLOP/s, from memsweep.sweeps.gpus, and where
    it came from."""
    if given:
        return given * 1e12, "--peak-tflops"
    if device.type != "cuda":
        return None, "none on a CPU"
    name = torch.cuda.get_device_name(device)
    key = of_device(name)
    if key is None:
        return None, f"unknown GPU {name!r}: pass --peak-tflops"
    return rates(key)[0], f"memsweep.sweeps.gpus ({key})"


def machine(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "host": platform.node(),
            "device": str(device), "threads": torch.get_num_threads(),
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_mem_gib=props.total_memory / 2 ** 30,
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def run_parts(ctx: Ctx, todo: list[str], result: dict, out_path: Path) -> None:
    impl = {"correctness": part_correctness, "speed": part_speed, "evaluation": part_evaluation,
            "pack": part_pack, "sweeps": part_sweeps, "scaling": part_scaling}
    for i, part in enumerate(todo):
        allowed = ctx.clock.begin(part, todo[i:])
        if allowed < ctx.sizes.min_part_s[part]:
            result["parts"][part] = {"skipped": f"skipped: {ctx.clock.left():.0f} s of the budget left "
                                                f"(needs ~{ctx.sizes.min_part_s[part]} s)"}
            result["skipped"].append(part)
        else:
            print(f"[{ctx.clock.elapsed():5.0f} s] {part} (up to {allowed:.0f} s)", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                result["parts"][part] = impl[part](ctx, result["parts"])
            except Exception as e:  # one broken part does not lose the others
                result["parts"][part] = {"error": error_string(e), "traceback": traceback.format_exc()[-4000:]}
            result["parts"][part]["seconds"] = time.perf_counter() - started
            free()
        result["elapsed_s"] = ctx.clock.elapsed()
        out_path.write_text(json.dumps(result, indent=1, default=str))  # what is done so far, if stopped later


def skipped_inside(value, path: str = "") -> list[str]:
    """Where a part skipped a measurement of its own (entries {"error": "skipped: ..."})."""
    if isinstance(value, dict):
        if str(value.get("error", "")).startswith("skipped"):
            return [path]
        return [p for k, v in value.items() for p in skipped_inside(v, f"{path}/{k}" if path else str(k))]
    return []


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON file with every number")
    ap.add_argument("--cpu-smoke", action="store_true", help="every part with tiny sizes on the CPU (~1 minute)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="stop starting parts when the time nears this")
    ap.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak (default: memsweep.sweeps.gpus)")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --cpu-smoke")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {','.join(PARTS)}")
    ap.add_argument("--merge", help="an earlier JSON whose parts not run now are kept (e.g. --only sweeps)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    clock = Clock(args.budget_s)
    device = torch.device(args.device or ("cpu" if args.cpu_smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --cpu-smoke (tiny sizes on the CPU) or on a GPU machine", file=sys.stderr)
        return 2
    todo = [p for p in args.only.split(",") if p]
    unknown = set(todo) - set(PARTS)
    if unknown:
        print(f"--only: unknown part(s) {sorted(unknown)} (choose from {', '.join(PARTS)})", file=sys.stderr)
        return 2
    if args.cpu_smoke:
        torch.set_num_threads(1)  # as memsweep's CPU runs: a shared CPU's other core only contends
    peak, peak_source = peak_flops(device, args.peak_tflops)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    result = {"mode": "cpu-smoke" if args.cpu_smoke else "gpu", "budget_s": args.budget_s, "machine": machine(device),
              "peak_bf16_tflops": peak / 1e12 if peak else None, "peak_source": peak_source,
              "parts": {}, "skipped": []}
    if args.merge:  # parts not run now, from an earlier run (the sweeps part reads speed and evaluation)
        earlier = json.loads(Path(args.merge).read_text())
        result["parts"] = {k: v for k, v in earlier.get("parts", {}).items() if k not in todo}
        result["merged_from"] = {"file": args.merge, "parts": sorted(result["parts"]),
                                 "measured": earlier.get("machine", {}).get("measured")}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        root = Path(tmp)
        # random CIFAR-10 python batches: 5 x 1,024 training images (n = 4,096 fits), 1,024 test images
        make_synthetic_cifar(root / "data", per_batch=20 if args.cpu_smoke else 1024)
        ctx = Ctx(device, SMOKE_SIZES if args.cpu_smoke else GPU_SIZES, root, root / "data", clock, peak,
                  args.cpu_smoke)
        run_parts(ctx, todo, result, out_path)
    result["elapsed_s"] = clock.elapsed()
    m = result["machine"]
    print(f"\nmemsweep gpu_check ({result['mode']}): {m.get('gpu') or m.get('cpu')}, torch {m['torch']}, "
          f"bf16 peak {fmt(result['peak_bf16_tflops'], ' TFLOP/s')} ({peak_source})")
    print_table(result)
    result["skipped_measurements"] = skipped_inside({p: result["parts"].get(p) for p in todo})
    out_path.write_text(json.dumps(result, indent=1, default=str))
    if result["skipped"]:
        print(f"\nparts skipped for the time budget ({args.budget_s:.0f} s): {', '.join(result['skipped'])}")
    if result["skipped_measurements"]:
        print(f"measurements skipped within parts: {', '.join(result['skipped_measurements'])}")
    print(f"\n{result['elapsed_s']:.0f} s in all; every number in {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
