"""Sampling melodies from trained models: grammar masks, batched sampler, and the model loader."""

from musicgen.sampling.generator import MelodyGenerator, pick_device
from musicgen.sampling.sampler import GeneratedMelody, SampleRequest, sample_tokens

__all__ = ["MelodyGenerator", "GeneratedMelody", "SampleRequest", "sample_tokens", "pick_device"]
