"""Drive nanoGPT's ``model.py`` (verbatim, see SOURCE.md) on a tiny config, the same way
under PyTorch and under minattn, and save every number it produces.

``python nanogpt_driver.py OUT.npz`` or ``python -m minattn run nanogpt_driver.py OUT.npz``.

For each of bias=True/False and each attention branch (flash: F.scaled_dot_product_attention;
manual: masked_fill + softmax on the ``bias`` mask buffer), with weights drawn from a seeded
NumPy generator and loaded through ``load_state_dict``:
forward with targets (logits, loss), backward (every parameter's grad), three AdamW steps from
``configure_optimizers`` (parameters after), and ``generate(..., top_k=1)`` (greedy, so
deterministic: top_k=1 leaves one token with probability 1 for ``torch.multinomial``).

One change to the training recipe: AdamW's eps is raised to 1e-3 (through
``optimizer.param_groups``). The key part of ``c_attn.bias`` has an exactly zero gradient
(adding one vector to every key shifts each row of scores by a constant, which softmax
ignores), so each framework's gradient there is its own rounding noise (~1e-8), and AdamW
with eps=1e-8 turns noise into a full step of either sign. With eps=1e-3 that step is
~1e-5 of the learning rate, and the other gradients (~1e-3 and up) still step as in Adam.

Written for minattn's tests; only model.py is third-party.
"""

import contextlib
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from model import GPT, GPTConfig

BLOCK_SIZE, VOCAB, N_LAYER, N_HEAD, N_EMBD = 8, 17, 2, 2, 16
B = 2


@contextlib.contextmanager
def without_sdpa():
    """Hide F.scaled_dot_product_attention while a model is built, so that model.py takes
    its "slow attention" path and registers the causal-mask buffer ``bias``."""
    sdpa = F.scaled_dot_product_attention
    del F.scaled_dot_product_attention
    try:
        yield
    finally:
        F.scaled_dot_product_attention = sdpa


def seeded_weights(model):
    """One array per state_dict entry, drawn from a generator seeded by the entry's name (so
    the order in which a framework lists them does not matter); the tied lm_head.weight gets
    the same array as transformer.wte.weight; the mask buffers stay the causal mask."""
    state = {}
    for name, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        if name.endswith(".attn.bias"):  # the mask buffer of the manual branch
            mask = np.tril(np.ones((BLOCK_SIZE, BLOCK_SIZE), dtype=np.float32))
            state[name] = torch.from_numpy(mask.reshape(shape))
            continue
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") \
                or name.endswith("ln_f.weight"):
            values = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            values = 0.3 * rng.standard_normal(shape)
        state[name] = torch.tensor(values.astype(np.float32))
    state["lm_head.weight"] = state["transformer.wte.weight"]
    return state


def run(bias: bool, flash: bool, out: dict) -> None:
    tag = f"bias{int(bias)}_{'flash' if flash else 'manual'}"
    config = GPTConfig(block_size=BLOCK_SIZE, vocab_size=VOCAB, n_layer=N_LAYER,
                       n_head=N_HEAD, n_embd=N_EMBD, dropout=0.0, bias=bias)
    with contextlib.nullcontext() if flash else without_sdpa():
        model = GPT(config)
    for block in model.transformer.h:
        block.attn.flash = flash
        assert flash or hasattr(block.attn, "bias"), "manual branch without its mask buffer"
    model.load_state_dict(seeded_weights(model))

    rng = np.random.default_rng(7)
    idx = torch.from_numpy(rng.integers(0, VOCAB, size=(B, BLOCK_SIZE)))
    targets = torch.from_numpy(rng.integers(0, VOCAB, size=(B, BLOCK_SIZE)))
    targets[1, -2:] = -1  # ignore_index=-1: these two positions do not count

    logits, loss = model(idx, targets)
    loss.backward()
    out[f"{tag}/logits"] = logits.detach().numpy()
    out[f"{tag}/loss"] = np.array(loss.item())
    for name, p in model.named_parameters():
        out[f"{tag}/grad/{name}"] = p.grad.numpy().copy()

    optimizer = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-2,
                                           betas=(0.9, 0.95), device_type="cpu")
    for group in optimizer.param_groups:  # see the module docstring: eps against noise
        group["eps"] = 1e-3
    for _ in range(3):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _, loss = model(idx, targets)
        loss.backward()
    out[f"{tag}/loss_after_steps"] = np.array(loss.item())
    for name, p in model.named_parameters():
        out[f"{tag}/param/{name}"] = p.detach().numpy().copy()

    model.eval()
    prompt = torch.from_numpy(rng.integers(0, VOCAB, size=(B, 3)))
    generated = model.generate(prompt, max_new_tokens=BLOCK_SIZE + 2, top_k=1)
    out[f"{tag}/generated"] = generated.numpy()
    logits_last, none = model(generated[:, -BLOCK_SIZE:])
    assert none is None
    out[f"{tag}/logits_last"] = logits_last.detach().numpy()


def main() -> None:
    out = {}
    for bias in (True, False):
        for flash in (True, False):
            run(bias, flash, out)
    np.savez(sys.argv[1], **out)


if __name__ == "__main__":
    main()
