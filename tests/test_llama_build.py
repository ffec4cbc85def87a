"""The AMX guard decided from faked llama.cpp feature lists (no AMX hardware needed), then applied
for real: a model loaded with the guard's placement decodes the same logits as llama.cpp's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmsql_cli import llama_build
from slmsql_cli.llama_build import TensorInfo, parse_system_info, plan_placement

# llama_print_system_info() of a Sapphire Rapids build with -march=native (AMX compiled in).
AMX_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
    "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
    "REPACK = 1 | "
)
ZEN_INFO = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 0 | REPACK = 1 | "
NEON_INFO = "CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | REPACK = 1 | "


def q4_k_m_layer(i: int, rows: int = 896, ff: int = 4864) -> list[TensorInfo]:
    """One Qwen2.5-0.5B layer as Q4_K_M mixes it: attn_v and ffn_down in Q6_K, the rest Q4_K."""
    return [
        TensorInfo(f"blk.{i}.attn_q.weight", "Q4_K", (rows, rows)),
        TensorInfo(f"blk.{i}.attn_k.weight", "Q4_K", (rows, 128)),
        TensorInfo(f"blk.{i}.attn_v.weight", "Q6_K", (rows, 128)),
        TensorInfo(f"blk.{i}.attn_output.weight", "Q4_K", (rows, rows)),
        TensorInfo(f"blk.{i}.ffn_gate.weight", "Q4_K", (rows, ff)),
        TensorInfo(f"blk.{i}.ffn_up.weight", "Q4_K", (rows, ff)),
        TensorInfo(f"blk.{i}.ffn_down.weight", "Q6_K" if i % 2 else "Q4_K", (ff, rows)),
        TensorInfo(f"blk.{i}.attn_norm.weight", "F32", (rows,)),
    ]


MODEL = [TensorInfo("token_embd.weight", "Q4_K", (896, 151936))] + [
    t for i in range(3) for t in q4_k_m_layer(i)
]


def test_parse_system_info_reads_features_and_buffers() -> None:
    info = parse_system_info(AMX_INFO, ["AMX", "CPU_REPACK"])
    assert {"AVX2", "AVX512", "AMX_INT8"} <= info.features
    assert "AVX512_BF16" in info.features and "SSE3" in info.features
    assert info.amx_compiled and info.amx_active
    zen = parse_system_info(ZEN_INFO, ["CPU_REPACK"])
    assert "AVX512" not in zen.features  # "= 0" is off
    assert not zen.amx_compiled and not zen.amx_active
    # compiled in, but the kernel refused AMX: llama.cpp offers no AMX buffer, nothing to guard
    assert not parse_system_info(AMX_INFO, ["CPU_REPACK"]).amx_active


@pytest.mark.parametrize(
    "info, bufts",
    [(ZEN_INFO, ["CPU_REPACK"]), (NEON_INFO, ["CPU_REPACK"]), (AMX_INFO, ["CPU_REPACK"]), ("", [])],
)
def test_without_the_amx_buffer_llama_cpp_defaults_are_kept(info: str, bufts: list[str]) -> None:
    placement = plan_placement(parse_system_info(info, bufts), MODEL, gpu_offload=False)
    assert placement == llama_build.Placement()


def test_amx_guard_turns_extra_buffers_off_and_repacks_what_llama_cpp_would() -> None:
    info = parse_system_info(AMX_INFO, ["AMX", "CPU_REPACK"])
    placement = plan_placement(info, MODEL, gpu_offload=False)
    assert placement.use_extra_bufts is False
    assert "AMX is not used" in placement.reason
    import re

    def picked(name: str) -> bool:
        return any(re.search(p, name) for p in placement.repack)

    # Q4_K weights with rows divisible by 8: repacked
    assert picked("blk.0.attn_q.weight") and picked("blk.2.ffn_up.weight") and picked("blk.0.ffn_down.weight")
    # Q6_K is repacked only on ARM; the embedding is read by GET_ROWS; norms are 1-D
    assert not picked("blk.0.attn_v.weight")
    assert not picked("blk.1.ffn_down.weight")
    assert not picked("token_embd.weight") and not picked("blk.0.attn_norm.weight")
    # and nothing else by accident: not layer 10 when only 0..2 exist, not layer 1x through a prefix
    assert not picked("blk.10.attn_q.weight") and not picked("blk.0.attn_q.weight.extra")
    assert placement.repacked_tensors == sum(picked(t.name) for t in MODEL)
    assert len(placement.repack) <= 8  # grouped by kind, not one regex per tensor


def test_repack_rules_follow_llama_cpp() -> None:
    avx2 = frozenset({"AVX2"})
    assert llama_build.repackable(TensorInfo("blk.0.ffn_up.weight", "Q4_0", (64, 256)), avx2)
    assert llama_build.repackable(TensorInfo("blk.0.ffn_up.weight", "IQ4_NL", (64, 256)), avx2)
    assert llama_build.repackable(TensorInfo("output.weight", "Q4_0", (64, 256)), avx2)
    assert not llama_build.repackable(TensorInfo("blk.0.ffn_up.weight", "Q4_0", (64, 252)), avx2)  # rows % 8
    assert not llama_build.repackable(TensorInfo("blk.0.ffn_up.weight", "Q8_0", (64, 256)), avx2)
    assert not llama_build.repackable(TensorInfo("blk.0.ffn_up.weight", "Q4_0", (64, 256)), frozenset())
    assert not llama_build.repackable(TensorInfo("blk.0.ffn_up.weight", "Q2_K", (256, 256)), avx2)
    assert llama_build.repackable(
        TensorInfo("blk.0.ffn_up.weight", "Q2_K", (256, 256)), frozenset({"AVX512"})
    )


def test_gpu_offload_or_no_repack_buffer_means_no_overrides() -> None:
    info = parse_system_info(AMX_INFO, ["AMX", "CPU_REPACK"])
    gpu = plan_placement(info, MODEL, gpu_offload=True)
    assert gpu.use_extra_bufts is False and gpu.repack == ()  # an override would pin layers to the CPU
    lone = plan_placement(parse_system_info(AMX_INFO, ["AMX"]), MODEL, gpu_offload=False)
    assert lone.use_extra_bufts is False and lone.repack == ()


def test_modes() -> None:
    info = parse_system_info(AMX_INFO, ["AMX", "CPU_REPACK"])
    assert plan_placement(info, MODEL, gpu_offload=False, mode="llama") == llama_build.Placement()
    plain = plan_placement(info, MODEL, gpu_offload=False, mode="plain")
    assert plain.use_extra_bufts is False and plain.repack == ()
    zen = parse_system_info(ZEN_INFO, ["CPU_REPACK"])
    forced = plan_placement(zen, MODEL, gpu_offload=False, mode="guard")
    assert forced.use_extra_bufts is False and forced.repack
    with pytest.raises(ValueError):
        plan_placement(info, MODEL, gpu_offload=False, mode="fast")


def test_describe_names_features_and_buffers() -> None:
    text = parse_system_info(AMX_INFO, ["AMX", "CPU_REPACK"]).describe()
    assert "AMX_INT8" in text and "AVX512" in text and "extra buffers: AMX, CPU_REPACK" in text


# ---- the placement applied by llama.cpp itself --------------------------------------------------


def _greedy(model_path: Path, mode: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """Greedy text, the placement's reason and llama.cpp's load log for one placement mode."""
    import ctypes

    import llama_cpp

    from slmsql_cli.engine import Engine
    from slmsql_cli.engine_protocol import SamplingParams

    log: list[str] = []

    @llama_cpp.llama_log_callback
    def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        log.append(text.decode("utf-8", "replace"))

    monkeypatch.setenv("SLMSQL_DEBUG", "1")  # llama_logs.silence() leaves this callback in place
    monkeypatch.setenv("SLMSQL_WEIGHT_BUFFERS", mode)
    llama_cpp.llama_log_set(keep, ctypes.c_void_p(0))
    try:
        with Engine(model_path, threads=1, gpu_layers=0) as engine:
            params = SamplingParams(n=1, max_tokens=6, temperature=0.0, stop=(), ignore_eos=True)
            completions, _ = engine.sample("SELECT name FROM", params)
            return completions[0].text, engine.placement.reason, "".join(log)
    finally:
        from slmsql_cli import llama_logs

        llama_logs._callback = None
        monkeypatch.delenv("SLMSQL_DEBUG")
        llama_logs.silence()


@pytest.mark.parametrize("quant", ["q4_0", "iq4_nl", "q4_k_m"])
def test_guard_placement_repacks_and_decodes_like_llama_cpp_defaults(
    gemma_gguf: Path, tmp_path: Path, quant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`guard` (what an AMX build gets) loads with extra buffer types off and CPU_REPACK put back
    per weight: llama.cpp reports a CPU_REPACK buffer, and the greedy text equals llama.cpp's
    default placement (the same repacked kernels); `plain` has no repacked buffer at all."""
    import llama_cpp

    from slmsql_cli.quantize.quantizer import FTYPES

    model = gemma_gguf if quant == "q4_k_m" else tmp_path / f"gemma-{quant}.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[quant][0]
    params.allow_requantize = True  # the test model ships as Q4_K_M
    params.nthread = 2
    if model != gemma_gguf:
        assert llama_cpp.llama_model_quantize(str(gemma_gguf).encode(), str(model).encode(), params) == 0
    default, reason_default, log_default = _greedy(model, "llama", monkeypatch)
    guarded, reason, log_guard = _greedy(model, "guard", monkeypatch)
    plain, _, log_plain = _greedy(model, "plain", monkeypatch)
    assert reason_default == ""
    assert "CPU_REPACK model buffer size" in log_default
    assert "CPU_REPACK model buffer size" in log_guard, log_guard[-2000:]
    assert "CPU_REPACK" not in log_plain
    assert "repacked (CPU_REPACK)" in reason
    assert guarded == default
    assert plain  # decodes too
