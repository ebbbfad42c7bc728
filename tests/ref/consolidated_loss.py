"""The PyTorch check of `minispeed consolidate`: loads the consolidated file
(Hugging Face GPT-2 names and layout, the tied wte stored once) into
gpt_ref.py's GPT, ties the head to it, and prints the mean cross-entropy on
training window 0 of the data contract at batch B x T (one process): the
loss `minispeed train --init-from FILE --batch-size B --seq-len T` logs at
step 1, before its first update. scripts/test-checkpoints.sh compares the two.

    /usr/bin/python3 tests/ref/consolidated_loss.py FILE B T

Needs torch (Debian's python3-torch); a reference tool, never a runtime
dependency.
"""
import sys

import torch

import gpt_ref as ref


def main():
    path, b, t = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hf, meta = ref.load_safetensors(path)
    assert "lm_head.weight" not in hf, "the tied head must not be stored twice"
    # gpt_ref's modules read their sizes from these globals when built.
    ref.V, ref.C = hf["wte.weight"].shape
    ref.BLOCK = hf["wpe.weight"].shape[0]
    ref.N_LAYER = int(meta["n_layer"])
    ref.N_HEAD = int(meta["n_head"])
    ref.B, ref.T = b, t
    torch.set_num_threads(1)
    model = ref.GPT()
    expected = {n for n, _ in model.named_parameters()}
    assert expected == set(hf), ("names differ", sorted(expected ^ set(hf)))
    ref.load_hf(model, hf)
    x, y = ref.get_batch(ref.load_tokens(), 0)
    with torch.no_grad():
        _, loss = model(x, y)
    print(f"loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
