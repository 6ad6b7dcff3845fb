#!/usr/bin/env python3
"""Loads an adapter folder written by `save_adapters` with Hugging Face PEFT and checks that PEFT
adapts exactly the modules the workbench adapted, with no missing or unexpected keys.

    python3 tools/peft_load_check.py MODEL_DIR ADAPTER_DIR

MODEL_DIR is the base checkpoint (`model.safetensors` + `config.json`); the module tree PEFT sees
is built from its tensor names, which are the names of the public LLaDA modeling code
(`model.transformer.blocks.N.q_proj`, ..., the LM head `model.transformer.ff_out`), so PEFT
resolves `target_modules` exactly as it would on the real `LLaDAModelLM`. Needs `pip install
torch safetensors peft`; by hand only, never in CI. Exit status 0 only when every check holds.
"""
import json
import sys
from pathlib import Path

import torch
from peft import PeftModel
from safetensors import safe_open
from safetensors.torch import load_file


def module_tree(model_dir):
    """An nn.Module whose dotted parameter names equal the checkpoint's tensor names."""
    root = torch.nn.Module()
    with safe_open(str(Path(model_dir) / "model.safetensors"), "pt") as f:
        for key in f.keys():
            shape = f.get_slice(key).get_shape()
            *path, leaf = key.split(".")
            assert leaf == "weight", key
            parent = root
            for part in path[:-1]:
                if not hasattr(parent, part):
                    parent.add_module(part, torch.nn.Module())
                parent = getattr(parent, part)
            if len(shape) == 2 and path[-1] != "wte":
                mod = torch.nn.Linear(shape[1], shape[0], bias=False)
            elif len(shape) == 2:
                mod = torch.nn.Embedding(shape[0], shape[1])
            else:
                mod = torch.nn.Module()
                mod.weight = torch.nn.Parameter(torch.zeros(shape))
            parent.add_module(path[-1], mod)
    return root


def main():
    model_dir, adapter_dir = sys.argv[1:3]
    base = module_tree(model_dir)
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    saved = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    peft_model = PeftModel.from_pretrained(base, adapter_dir)

    # Modules PEFT wrapped with LoRA, against the modules the saved tensors name.
    wrapped = sorted(
        name.removeprefix("base_model.model.")
        for name, mod in peft_model.named_modules()
        if hasattr(mod, "lora_A") and "default" in getattr(mod, "lora_A", {})
    )
    saved_modules = sorted({k.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] for k in saved})
    # What PEFT holds after loading, under the file's names.
    state = {
        k.replace(".default", ""): v
        for k, v in peft_model.state_dict().items()
        if "lora_" in k
    }
    missing = sorted(set(state) - set(saved))
    unexpected = sorted(set(saved) - set(state))
    mismatched = sorted(k for k in set(saved) & set(state) if not torch.equal(saved[k], state[k]))
    head_adapted = any(m == "model.transformer.ff_out" for m in wrapped)

    print(f"target_modules: {cfg['target_modules']}")
    print(f"PEFT wrapped {len(wrapped)} modules, the file holds adapters for {len(saved_modules)}")
    print(f"missing adapter keys: {len(missing)} {missing[:4]}")
    print(f"unexpected adapter keys: {len(unexpected)} {unexpected[:4]}")
    print(f"tensors loaded unequal to the file: {len(mismatched)} {mismatched[:4]}")
    print(f"LM head model.transformer.ff_out adapted: {head_adapted}")
    ok = wrapped == saved_modules and not missing and not unexpected and not mismatched
    ok = ok and (head_adapted == ("model.transformer.ff_out" in saved_modules))
    print("peft load: " + ("ok" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
