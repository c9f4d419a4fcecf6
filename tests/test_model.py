"""Tests of transformer.model: config checks, equivalence with nn.Transformer,
checkpoints."""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from transformer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from transformer.config import TransformerConfig
from transformer.model import Transformer

SV, TV = 19, 13

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor:UserWarning")


def _config(**kw: object) -> TransformerConfig:
    base = dict(
        src_vocab_size=SV,
        tgt_vocab_size=TV,
        d_model=16,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=32,
        dropout=0.0,
    )
    base.update(kw)
    return TransformerConfig(**base)  # type: ignore[arg-type]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, SV, (3, 7), generator=g)
    tgt = torch.randint(4, TV, (3, 6), generator=g)
    tgt[:, 0] = 1  # bos
    src[0, 5:] = 0
    src[2, 3:] = 0
    tgt[1, 4:] = 0
    return src, tgt


# ------------------------------------------------------------------------ config


def test_config_is_frozen_and_validated() -> None:
    c = _config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.d_model = 32  # type: ignore[misc]
    deeper = dataclasses.replace(c, n_encoder_layers=4)
    assert deeper.n_encoder_layers == 4 and c.n_encoder_layers == 2
    with pytest.raises(ValueError, match="divisible by n_heads"):
        dataclasses.replace(c, n_heads=3)
    with pytest.raises(ValueError, match="dropout must be in"):
        _config(dropout=1.5)
    with pytest.raises(ValueError, match="activation"):
        _config(activation="tanh")
    with pytest.raises(ValueError, match="share_embeddings"):
        _config(share_embeddings=True)
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        _config(d_model=0)
    with pytest.raises(ValueError, match="pad_id"):
        _config(pad_id=50)
    with pytest.raises(ValueError, match="must name a positional scheme"):
        # refused by the config itself, not only the model
        _config(positional="fourier")
    assert _config(positional="RoPE").positional == "RoPE"  # names are case-insensitive


def test_bias_false_reaches_the_output_layer() -> None:
    model = Transformer(_config(bias=False))
    assert model.decoder.output.bias is None
    assert not any(
        name.endswith(".bias") and "norm" not in name and "linear" in name
        for name, _ in model.named_parameters()
    )
    src, tgt = _batch()
    with torch.no_grad():
        model.eval()
        assert model(src, tgt).shape[-1] == model.config.tgt_vocab_size
        logits, _ = model.step(tgt[:, 0], model.start(src))
        assert torch.isfinite(logits).all()


def test_config_final_norm_default_follows_norm_first() -> None:
    assert not _config().use_final_norm
    assert _config(norm_first=True).use_final_norm
    assert _config(final_norm=True).use_final_norm


# ------------------------------------------------------------ against nn.Transformer


class TorchReference(nn.Module):
    """nn.Transformer plus the same embeddings, positions and output layer as ours."""

    def __init__(self, ours: Transformer) -> None:
        super().__init__()
        c = ours.config
        self.ours = ours
        self.core = nn.Transformer(
            c.d_model,
            c.n_heads,
            c.n_encoder_layers,
            c.n_decoder_layers,
            c.d_ff,
            dropout=c.dropout,
            batch_first=True,
            norm_first=c.norm_first,
        )
        ours.copy_from_torch(self.core)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        o = self.ours
        pe = o.encoder.positional
        s = pe.embed(o.encoder.embedding(src), torch.arange(src.shape[1]))
        t = pe.embed(o.decoder.embedding(tgt), torch.arange(tgt.shape[1]))
        causal = nn.Transformer.generate_square_subsequent_mask(
            tgt.shape[1], dtype=torch.bool
        )
        h = self.core(
            s,
            t,
            tgt_mask=causal,
            src_key_padding_mask=src == 0,
            tgt_key_padding_mask=tgt == 0,
            memory_key_padding_mask=src == 0,
        )
        return o.decoder.output(h)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_whole_model_matches_torch_transformer(norm_first: bool, mode: str) -> None:
    torch.manual_seed(0)
    ours = Transformer(_config(norm_first=norm_first, final_norm=True))
    ref = TorchReference(ours)
    ours.train(mode == "train")
    ref.core.train(mode == "train")
    src, tgt = _batch()
    real = (tgt != 0)[..., None]
    out_ours = ours(src, tgt)
    ours_grads = None
    if mode == "train":
        (out_ours * real).pow(2).mean().backward()
        ours_grads = {n: p.grad.clone() for n, p in ours.named_parameters()}
        ours.zero_grad()
    out_ref = ref(src, tgt)
    torch.testing.assert_close(out_ours * real, out_ref * real, atol=1e-5, rtol=1e-4)
    if mode == "train":
        (out_ref * real).pow(2).mean().backward()
        assert ours_grads is not None
        # embeddings and output layer are shared, their gradients must agree
        for name in ("encoder.embedding.embedding.weight", "decoder.output.weight"):
            torch.testing.assert_close(
                ours_grads[name],
                dict(ours.named_parameters())[name].grad,
                atol=1e-5,
                rtol=1e-4,
            )
        theirs = ref.core.decoder.layers[0].linear1.weight.grad
        torch.testing.assert_close(
            ours_grads["decoder.layers.0.ffn.linear1.weight"],
            theirs,
            atol=1e-5,
            rtol=1e-4,
        )


def test_padding_does_not_change_real_outputs() -> None:
    """Extra padding on source and target leaves the logits of real tokens unchanged."""
    torch.manual_seed(1)
    model = Transformer(_config()).eval()
    src, tgt = _batch()
    longer_src = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], 1)
    longer_tgt = torch.cat([tgt, torch.zeros(3, 3, dtype=torch.long)], 1)
    a = model(src, tgt)
    b = model(longer_src, longer_tgt)[:, : tgt.shape[1]]
    real = (tgt != 0)[..., None]
    torch.testing.assert_close(a * real, b * real, atol=1e-5, rtol=1e-5)


def test_future_target_tokens_do_not_leak() -> None:
    torch.manual_seed(2)
    model = Transformer(_config()).eval()
    src, tgt = _batch()
    changed = tgt.clone()
    changed[:, -1] = 5
    torch.testing.assert_close(model(src, tgt)[:, :-1], model(src, changed)[:, :-1])


@pytest.mark.parametrize(
    "positional", ["sinusoidal", "learned", "rope", "alibi", "t5", "none"]
)
def test_every_positional_scheme_trains_and_decodes(positional: str) -> None:
    torch.manual_seed(3)
    model = Transformer(_config(positional=positional, max_len=32))
    src, tgt = _batch()
    logits = model(src, tgt)
    assert logits.shape == (3, 6, TV) and torch.isfinite(logits).all()
    logits.sum().backward()
    model.eval()
    with torch.no_grad():
        full = model(src, tgt)
        state = model.start(src)
        for t in range(tgt.shape[1]):
            step_logits, state = model.step(tgt[:, t], state)
            real = tgt[:, : t + 1].ne(0).all(1)  # rows whose prefix has no padding
            torch.testing.assert_close(
                step_logits[real], full[real, t], atol=1e-5, rtol=1e-4
            )


def test_embedding_scale_and_weight_tying() -> None:
    model = Transformer(_config(d_model=64, n_heads=4, tie_output=True))
    emb = model.decoder.embedding
    assert model.decoder.output.weight is emb.weight
    std = float(emb.weight[1:].detach().std())
    assert abs(std - 64**-0.5) < 0.3 * 64**-0.5  # N(0, 1/C), not N(0, 1)
    scaled = emb(torch.tensor([[5]]))
    assert math.isclose(float(scaled.detach().std()), std * 8, rel_tol=0.5)
    untied = Transformer(_config(d_model=64, n_heads=4))
    assert model.num_parameters() == untied.num_parameters() - 64 * TV
    shared = Transformer(_config(src_vocab_size=TV, share_embeddings=True))
    assert shared.encoder.embedding is shared.decoder.embedding


def test_parameter_count_matches_formula() -> None:
    c = _config()
    model = Transformer(c)
    C, F_, L = c.d_model, c.d_ff, c.n_encoder_layers
    attn = 4 * (C * C + C)
    ffn = C * F_ + F_ + F_ * C + C
    enc = L * (attn + ffn + 2 * 2 * C)
    dec = c.n_decoder_layers * (2 * attn + ffn + 3 * 2 * C)
    emb = SV * C + TV * C
    out = C * TV + TV
    assert model.num_parameters() == enc + dec + emb + out
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_attention_maps_shapes_and_rows_sum_to_one() -> None:
    model = Transformer(_config())
    src, tgt = _batch()
    maps = model.attention_maps(src, tgt)
    assert len(maps["encoder"]) == 2 and maps["encoder"][0].shape == (3, 4, 7, 7)
    assert maps["cross"][1].shape == (3, 4, 6, 7)
    torch.testing.assert_close(maps["cross"][0].sum(-1), torch.ones(3, 4, 6))
    # no attention to padded source positions
    assert float(maps["cross"][0][0, :, :, 5:].abs().max()) == 0.0


def test_clear_errors_on_bad_input() -> None:
    model = Transformer(_config())
    src, tgt = _batch()
    with pytest.raises(TypeError, match="torch.long"):
        model(src.float(), tgt)
    with pytest.raises(ValueError, match="vocabulary has 19"):
        model(src + 100, tgt)
    with pytest.raises(ValueError, match="batch size"):
        model(src[:2], tgt)
    with pytest.raises(ValueError, match="shape"):
        model(src[0], tgt)
    learned = Transformer(_config(positional="learned", max_len=5))
    with pytest.raises(ValueError, match="at most 5 positions"):
        learned(src, tgt)


# -------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_is_bit_identical(tmp_path: os.PathLike[str]) -> None:
    torch.manual_seed(4)
    model = Transformer(_config(positional="learned", tie_output=True)).eval()
    path = save_checkpoint(model, os.path.join(tmp_path, "ckpt", "m.pt"), step=7)
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.decoder.output.weight is loaded.decoder.embedding.weight
    src, tgt = _batch()
    assert torch.equal(model(src, tgt), loaded(src, tgt))
    assert not loaded.training
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temp file left


def test_checkpoint_errors(tmp_path: os.PathLike[str]) -> None:
    model = Transformer(_config())
    good = save_checkpoint(model, os.path.join(tmp_path, "good.pt"))
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(os.path.join(tmp_path, "missing.pt"))
    data = open(good, "rb").read()
    truncated = os.path.join(tmp_path, "truncated.pt")
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    garbage = os.path.join(tmp_path, "garbage.pt")
    with open(garbage, "wb") as f:
        f.write(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(garbage)
    foreign = os.path.join(tmp_path, "foreign.pt")
    torch.save(model.state_dict(), foreign)  # a bare state dict, not our format
    with pytest.raises(
        CheckpointError, match="not a checkpoint written by save_checkpoint"
    ):
        load_checkpoint(foreign)
    # weights that do not fit the stored config
    payload = torch.load(good, weights_only=True)
    payload["config"]["d_ff"] = 64
    mismatched = os.path.join(tmp_path, "mismatched.pt")
    torch.save(payload, mismatched)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(mismatched)
    with pytest.raises(CheckpointError, match="different config"):
        load_checkpoint(good, config=_config(d_model=32))


def test_failed_save_keeps_previous_checkpoint(
    tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Transformer(_config())
    path = save_checkpoint(model, os.path.join(tmp_path, "m.pt"))
    before = open(path, "rb").read()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(Transformer(_config(d_ff=64)), path)
    assert open(path, "rb").read() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]


def test_checkpoint_extra_values_come_back(tmp_path: os.PathLike[str]) -> None:
    model = Transformer(_config())
    extra = {"steps": 1200, "val": [0.5, 0.25], "note": "dates", "best": {"acc": 0.99}}
    path = save_checkpoint(model, os.path.join(tmp_path, "m.pt"), **extra)
    loaded, got = load_checkpoint(path, with_extra=True)
    assert got == extra and isinstance(loaded, Transformer)
    assert isinstance(load_checkpoint(path), Transformer)  # the default stays a model


@pytest.mark.parametrize(
    "bad, culprit",
    [
        (np.float32(0.5), "float32"),
        (object(), "object"),
        ({1: 2}, "key 1"),
        ([1, {2}], "set"),
    ],
)
def test_checkpoint_refuses_extra_values_it_could_not_load(
    tmp_path: os.PathLike[str], bad: object, culprit: str
) -> None:
    path = os.path.join(tmp_path, "m.pt")
    with pytest.raises(TypeError, match=culprit):
        save_checkpoint(Transformer(_config()), path, metric=bad)
    assert not os.path.exists(path)


def test_checkpoint_file_permissions_and_plain_text(tmp_path: os.PathLike[str]) -> None:
    umask = os.umask(0o022)
    try:
        path = save_checkpoint(Transformer(_config()), os.path.join(tmp_path, "m.pt"))
    finally:
        os.umask(umask)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # readable like any file
    text = os.path.join(tmp_path, "notes.pt")
    with open(text, "w") as f:
        f.write("epoch 3: loss 0.25\n" * 20)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(text)


def test_attention_maps_ignore_dropout_and_keep_the_mode() -> None:
    torch.manual_seed(2)
    model = Transformer(_config(dropout=0.3)).train()
    src, tgt = _batch()
    first = model.attention_maps(src, tgt)
    second = model.attention_maps(src, tgt)
    assert model.training  # the caller's mode is restored
    for kind in ("encoder", "decoder_self", "cross"):
        for a, b in zip(first[kind], second[kind]):
            torch.testing.assert_close(a, b)  # no dropout draw in the maps
