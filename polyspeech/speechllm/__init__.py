"""Speech LLMs in MooER's design: a frozen Paraformer (SAN-M) encoder (or a Whisper or wav2vec2
encoder), an adapter giving one embedding per 120 ms, and a causal LM (Qwen2 family) with LoRA.

:mod:`.frontend` (fbank, LFR, CMVN), :mod:`.sanm` (the encoder), :mod:`.encoders`,
:mod:`.adapter`, :mod:`.model` (prompting and decoding), :mod:`.folder` (loading and saving).
"""
