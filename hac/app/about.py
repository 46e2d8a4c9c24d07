"""The text of the app's "About" tab."""

from __future__ import annotations

__all__ = ["ABOUT_MARKDOWN"]

ABOUT_MARKDOWN = """
## What this app shows

An image classifier can be fooled by a perturbation too small to see: an *adversarial example*.
One old idea for a defence is to compress the image before classifying it, hoping the codec throws
away the perturbation along with other detail nobody would miss. Learned codecs that are trained to keep
what people perceive ("human-aligned" compression), applied several times in a row, are the latest form
of that idea.

The **Attack & purify** tab runs the whole story on one image: it resizes the image to the classifier's
input, attacks it, compresses and decompresses the adversarial image for the chosen number of rounds, and
shows the top-5 predictions of the clean, adversarial and purified images, the perturbation (amplified so
that it is visible), and the bits per pixel and PSNR of every round. Every image is exchanged as a
lossless PNG: a lossy format in between would itself act as a purifier and the demo would flatter the
defence. The adversarial PNG you download is bit for bit the image that was classified.

The **Batch evaluation** tab runs the same measurement over a folder of images and a grid of settings,
and reports accuracies with plots and the raw results.

The **Attack the codec** tab turns the attack on the purifier itself (Zhu, Sun et al., 2024): a PGD
perturbation of at most ε per pixel that makes the codec reconstruct the image worse (*distortion*: lower
PSNR against the clean image) or spend more bits on it (*rate*). Gradients come from a differentiable
stand-in of the codec (JPEG: a differentiable JPEG for distortion and a DCT-domain rate proxy for rate;
learned codecs: their own latents with rounding passed straight through); every number shown comes from
the real codec (Pillow for JPEG, the real entropy-coded bitstream for learned codecs). A random ±ε
perturbation of the same size is measured beside the attack, so that an attack can be told from noise.

## Threat models: what the attacker knows

A defence is only as good as the strongest attacker it was tested against. Compression is not
differentiable (its quantisation has zero gradient almost everywhere), so a naive gradient attack
through it sees no useful gradient and *appears* to fail. That is gradient masking, not robustness.

- **Oblivious** — the attacker ignores the defence and attacks the bare classifier; the codec is applied
  afterwards. Useful as a baseline, never as evidence of robustness.
- **BPDA** (default) — the attacker runs the real codec in the forward pass and pretends it is the identity
  in the backward pass (Backward Pass Differentiable Approximation). Cheap and often devastating.
- **Straight-through** — the real codec runs forward; the gradient comes from a differentiable stand-in for
  each codec (for learned codecs, rounding of the latents passed straight through; for JPEG, a
  differentiable JPEG), and the identity where a codec has none.
- **EOT** — straight-through averaged over several draws of a randomised defence (Expectation over
  Transformation), so randomness cannot hide the gradient either.

The app checks the gradient the attacker actually received and whether the attack raised its loss, and
warns when either looks wrong: a "robust" result under a broken gradient means nothing.

## References

- S. Räber, A. Plesner, T. Aczel, R. Wattenhofer. *Human Aligned Compression for Robust Models.* AdvML
  workshop at CVPR 2025 (arXiv:2504.12255).
- A. Athalye, N. Carlini, D. Wagner. *Obfuscated Gradients Give a False Sense of Security: Circumventing
  Defenses to Adversarial Examples.* ICML 2018 (BPDA and EOT).
- X. Jia, X. Wei, X. Cao, H. Foroosh. *ComDefend: An Efficient Image Compression Model to Defend
  Adversarial Examples.* CVPR 2019.
- J. Ballé, D. Minnen, S. Singh, S. J. Hwang, N. Johnston. *Variational Image Compression with a Scale
  Hyperprior.* ICLR 2018.
- D. Minnen, J. Ballé, G. Toderici. *Joint Autoregressive and Hierarchical Priors for Learned Image
  Compression.* NeurIPS 2018.
- Z. Cheng, H. Sun, M. Takeuchi, J. Katto. *Learned Image Compression with Discretized Gaussian Mixture
  Likelihoods and Attention Modules.* CVPR 2020.
- T. Zhu, H. Sun et al. *Attack and Defense Analysis of Learned Image Compression.* 2024
  (arXiv:2401.10345): learned codecs themselves can be attacked, towards worse quality or more bits.

Example photographs: scikit-image's public-domain test images. Classifier by default: EfficientNet-Lite0
(Tan & Le, ICML 2019), embedded so that the app works offline.
"""
