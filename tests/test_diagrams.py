"""The architecture diagrams: each returns a figure and draws the labels it promises."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch  # noqa: E402

from transformer.block_diagrams import (  # noqa: E402
    draw_decoder_block,
    draw_encoder_block,
    draw_transformer,
)
from transformer.diagrams import (  # noqa: E402
    draw_attention_step,
    draw_connectivity,
    draw_encoder_decoder,
    draw_head_split,
)


def texts(fig: Figure) -> str:
    """Every string drawn on the figure: texts, titles and the figure's suptitle."""
    parts = [t.get_text() for ax in fig.axes for t in ax.texts]
    parts += [ax.get_title() for ax in fig.axes]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    return "\n".join(parts)


def n_boxes(fig: Figure) -> int:
    return sum(isinstance(p, FancyBboxPatch) for ax in fig.axes for p in ax.patches)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_encoder_decoder_draws_the_context_vector_and_shapes():
    fig = draw_encoder_decoder(steps=3)
    assert isinstance(fig, Figure)
    text = texts(fig)
    for label in ("context", "(B, S)", "(B, T)", "(B, H)", "(B, T, V)", "(B, E + H)"):
        assert label in text, label
    assert "x_S" in text and "<bos>" in text and "<eos>" in text
    # 3 steps: per side an input, an embedding and a cell, the decoder's 3 outputs,
    # and the context: 9 + 12 + 1
    assert n_boxes(fig) == 22
    assert n_boxes(draw_encoder_decoder(steps=4)) == 29


def test_attention_step_draws_query_weights_context_and_output():
    fig = draw_attention_step(source_len=4)
    text = texts(fig)
    for label in ("s_{t-1}", "c_t", "[embed; c_t]", "[s_t; c_t]", "(B, S)", "(B, V)"):
        assert label in text, label
    assert "a_tS" in text and "e_t1" in text and "h_S" in text
    assert sum("a_t" in t.get_text() for t in fig.axes[0].texts) >= 4


def test_head_split_draws_every_reshape():
    text = texts(draw_head_split())
    for label in ("(B, T, C)", "(B, T, H, D)", "(B, H, T, D)", "(B, H, T, T)", "W_O"):
        assert label in text, label
    assert "D = C / H" in text and "concat" in text


def test_connectivity_path_lengths_follow_the_arguments():
    fig = draw_connectivity(length=8, kernel=3)
    assert len(fig.axes) == 3
    text = texts(fig)
    assert "4 layers" in text  # ceil(7 / 2)
    assert "7 sequential steps" in text and "1 layer" in text
    assert "T = 8" in text
    text = texts(draw_connectivity(length=9, kernel=5))
    assert "2 layers" in text and "8 sequential steps" in text
    # the convolution panel: one row of T nodes per layer and the inputs
    conv = [p for p in draw_connectivity(6, 3).axes[0].patches if isinstance(p, Circle)]
    assert len(conv) == 6 * (3 + 1)


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_blocks_draw_their_sublayers_and_masks(norm):
    enc, dec = (
        texts(draw_encoder_block(norm=norm)),
        texts(draw_decoder_block(norm=norm)),
    )
    assert "self-attention" in enc and "(B, 1, 1, S)" in enc and "(B, S, C)" in enc
    assert "cross-attention" not in enc
    assert "masked self-attention" in dec and "cross-attention" in dec
    assert "(B, 1, T, T)" in dec and "memory" in dec and "(B, T, C)" in dec
    kind = "post-LN" if norm == "post" else "pre-LN"
    assert kind in enc and kind in dec
    # one LayerNorm per sub-layer in both layouts: 2 in the encoder, 3 in the decoder
    assert enc.count("LayerNorm") == 2 and dec.count("LayerNorm") == 3


def test_transformer_stack_draws_both_sides():
    text = texts(draw_transformer())
    for label in ("(B, S)", "(B, T)", "memory", "(B, T, V)", "L x", "cross-attention"):
        assert label in text, label
    assert "final LayerNorm" not in text
    assert texts(draw_transformer(norm="pre")).count("final LayerNorm") == 2


def test_drawing_onto_a_given_axes():
    fig, ax = plt.subplots()
    assert draw_head_split(ax) is fig
    assert draw_encoder_block(ax) is fig


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="norm must be one of"):
        draw_encoder_block(norm="middle")
    with pytest.raises(ValueError, match="norm must be one of"):
        draw_transformer(norm="")
    with pytest.raises(ValueError, match="steps"):
        draw_encoder_decoder(steps=1)
    with pytest.raises(ValueError, match="source_len"):
        draw_attention_step(source_len=1)
    with pytest.raises(ValueError, match="kernel must be odd"):
        draw_connectivity(kernel=4)
    with pytest.raises(ValueError, match="length"):
        draw_connectivity(length=2)
