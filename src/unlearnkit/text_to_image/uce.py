"""UCE (Gandikota et al. 2024, "Unified Concept Editing"): a closed-form edit of every cross-attention key and
value projection, a procedure instead of a gradient loop (`trainscripts/uce_sd_erase.py`).

For each projection W (out x in), with c_e the erased prompts' token embeddings, v*_e = W_0 c_g the
original projection of their guide prompts', and c_p the preserved prompts' (v_p = W_0 c_p):

    W* = (λ W_0 + s_e Σ v*_e c_eᵀ + s_p Σ W_0 c_p c_pᵀ) (λ I + s_e Σ c_e c_eᵀ + s_p Σ c_p c_pᵀ)⁻¹

The paper's equation has no λ terms (its λ weighs the preserved set); the code adds λ W_0 and λ I, which keep
W* near W_0 in every direction no prompt spans and make the inverse exist; here too (`lamb`, the code's 0.5).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..unlearning.context import Context
from ..unlearning.geometry import Procedure
from ..unlearning.params import Field, Params
from .components import cross_attention_layers
from .task import text_task


def uce_weights(weight: Tensor, erase: Tensor, guide: Tensor, preserve: Tensor, lamb: float, erase_scale: float = 1.0,
                preserve_scale: float = 1.0) -> Tensor:
    """The closed form above. `erase` (n_e, in) and `guide` (n_e, in) are paired embeddings (the guide's values
    are W_0 guide), `preserve` (n_p, in) keeps its own values. Computed in float64, returned in W's dtype."""
    w = weight.double()
    c_e, c_g, c_p = erase.double(), guide.double(), preserve.double()
    mat1 = lamb * w + erase_scale * (c_g @ w.T).T @ c_e + preserve_scale * (c_p @ w.T).T @ c_p
    mat2 = (lamb * torch.eye(w.shape[1], dtype=torch.float64) + erase_scale * c_e.T @ c_e
            + preserve_scale * c_p.T @ c_p)
    return torch.linalg.solve(mat2.T, mat1.T).T.to(weight.dtype)  # mat1 @ mat2⁻¹


def token_rows(text, prompt: str, other: str | None, tokens: str) -> tuple[Tensor, Tensor | None]:
    """Embedding rows of `prompt` (and of its guide `other`) that UCE edits:
    'last': the last word token (uce_sd_erase.py); 'trailing': from the last word token to the end of the
    padded sequence, both prompts cut to the same length (the original `train_erase.py`)."""
    emb = text.embed([prompt])[0]
    i = text.last_token(prompt)
    if other is None:
        return (emb[i:i + 1] if tokens == "last" else emb), None
    emb_o = text.embed([other])[0]
    j = text.last_token(other)
    if tokens == "last":
        return emb[i:i + 1], emb_o[j:j + 1]
    far = max(i, j)
    length = len(emb)
    return emb[i:length - (far - i)], emb_o[j:length - (far - j)]


class ClosedFormEdit(Procedure):
    """UCE's edit of the cross-attention K and V projections (`attn2.to_k`, `attn2.to_v`), once.

    Erased prompts: every prompt of the forget set; guides: the task's `remap` of each (the empty prompt by
    default, the code's guide for objects; 'art' for artists), preserved: every prompt of the remain set
    (`preserve='remain'`) or none. Differences from the code: the erased and preserved prompts are the
    dataset's captions (the code expands a concept into five templates), all of them in one closed form.
    """

    name = "uce"
    label = "closed-form edit of cross-attention K/V (UCE)"

    class Params(Params):
        lamb: float = Field(0.5, gt=0, description="λ of the λ W_0 / λ I regulariser (code: 0.5)")
        erase_scale: float = Field(1.0, gt=0, description="weight s_e of the erased prompts (code: 1)")
        preserve_scale: float = Field(1.0, ge=0, description="weight s_p of the preserved prompts (code: 1)")
        preserve: Literal["remain", "none"] = Field("remain", description="preserve every remain-set prompt, or none")
        tokens: Literal["last", "trailing"] = Field("last", description="edit the last word token (HEAD code) or "
                                                                        "it and every later token (first release)")

    @torch.no_grad()
    def run(self, ctx: Context, method, mask) -> None:
        if mask is not None:
            raise ConfigError("UCE is a closed form: declare it without a saliency mask")
        hp, task, text = ctx.hp, text_task(ctx), ctx.model.text
        erased = sorted({int(y) for y in ctx.forget.labels.cpu()})
        kept = sorted({int(y) for y in ctx.remain.labels.cpu()} - set(erased)) if hp["preserve"] == "remain" else []
        prompts = task.prompts + [""]
        erase_rows, guide_rows = [], []
        for p in erased:
            rows, guide = token_rows(text, prompts[p], prompts[task.remap.get(p, task.null)], hp["tokens"])
            erase_rows.append(rows)
            guide_rows.append(guide)
        preserve_rows = [token_rows(text, prompts[p], None, hp["tokens"])[0] for p in kept]
        c_e, c_g = torch.cat(erase_rows), torch.cat(guide_rows)
        c_p = torch.cat(preserve_rows) if preserve_rows else c_e.new_zeros((0, c_e.shape[1]))
        edited = 0
        for layer in cross_attention_layers(ctx.model).values():
            for projection in (layer.to_k, layer.to_v):
                w = projection.weight
                projection.weight.copy_(uce_weights(w.cpu(), c_e, c_g, c_p, hp["lamb"], hp["erase_scale"],
                                                    hp["preserve_scale"]).to(w.device))
                edited += 1
        if not edited:
            raise ConfigError("UCE needs cross-attention layers ('attn2'); this model has none")
        ctx.state["uce"] = {"projections": edited, "erased_rows": len(c_e), "preserved_rows": len(c_p)}
        ctx.forward_passes += len(erased) + len(kept)
