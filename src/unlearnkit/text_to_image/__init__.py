"""Concept erasure in text-to-image diffusion models built from diffusers' Stable Diffusion components.

- prompts, data: the captioned digits (sklearn digits in thick / thin / inverted strokes, 16x16, a caption each),
  concepts (a digit or a style) and their forget splits
- tokenizer, components: a local CLIP BPE tokenizer; UNet2DConditionModel + CLIPTextModel (+ AutoencoderKL)
  built from a config or read from a local diffusers folder; `TextToImageModel`, what the engine unlearns
- sampling, training: seeded DDIM with classifier-free guidance (and ESD's partial generation); training the
  original and the oracle from scratch, content-keyed in the store
- task, parts, uce, methods, engine: the text-to-image Task on the shared unlearning engine, the erasure parts
  (ESD's negative guidance, prompt remapping for SalUn and SFR-on, FMN's attention re-steering), UCE's closed
  form, the method registry and `unlearn_text_to_image` (multi-concept and sequential erasure too)
- metrics, evaluation, report, bench: concept classifiers, forget/retain accuracy, FID*, alignment, interference;
  the bench; nudity: I2P-style prompt files and the NudeNet metric for real SD weights

Heavy imports (diffusers, transformers, nudenet) happen inside the functions that need them.
"""
