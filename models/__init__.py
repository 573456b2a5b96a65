"""MarDini model components: one file per family (DiT / nanoGPT style).

attention.py  RoPE, Identity Attention, attention-type registry, norms and MLPs
planner.py    MAR planning model P (low resolution, [MASK] tokens, one signal per frame)
generator.py  DiT-style diffusion generator G (adaLN, cross-attention, planning-signal scale)
diffusion.py  noise schedules, v-prediction loss, DDIM, classifier-free guidance
masks.py      training mask schedules (pure functions of an explicit torch.Generator)
baselines.py  the training-free baselines (copy the nearest reference, blend between references)
codecs.py     latent codecs: pixel (patchify) and the pretrained TAEF2 autoencoder
mardini.py    the model: planner + generator + diffusion + codec
"""
