"""The served models and the one batcher all their computations go through (see
:mod:`polyspeech.serve.app`): what the routes ask of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import replace
from typing import Any

from polyspeech.errors import InputError
from polyspeech.options import TranscribeOptions
from polyspeech.serve.api import ESPEAK, ApiError, Metrics, ServeSettings, bad, served_kind
from polyspeech.serve.batching import DynamicBatcher, Overloaded

log = logging.getLogger(__name__)


class Served:
    """``models`` (name -> loaded model) behind a :class:`DynamicBatcher` of ``settings``."""

    def __init__(self, models: dict[str, Any], settings: ServeSettings) -> None:
        self.models, self.settings, self.metrics = models, settings, Metrics()
        self.batcher = DynamicBatcher(
            self.run,
            settings.max_batch,
            settings.max_wait_ms / 1000,
            settings.max_queue,
            self.metrics.batch.observe,
        )

    def spoken(self, name: str, item: dict):
        """``item``'s text spoken; a voice or text the model cannot speak is the request's
        fault, answered naming its field (found here, on the worker thread that holds
        espeak-ng)."""
        from polyspeech.tts import espeak_voice, speak

        if name == ESPEAK:
            try:
                espeak_voice(item["lang"])
            except InputError:
                raise bad(
                    f"voice {item['voice']!r}: espeak-ng has no voice for this language", "voice"
                ) from None
        try:
            if name == ESPEAK:
                return speak(item["text"], item["lang"], None, item["speed"])
            return self.models[name].speak(item["text"], item["lang"], item["speed"])
        except InputError:
            raise bad(f"input: model {name!r} finds nothing in it to speak", "input") from None

    def run(self, key: Hashable, items: list[dict]) -> list[Any]:
        kind, name = key[0], key[1]
        if kind == "recognise":
            model, task = self.models[name], key[2]
            files = [item["samples"] for item in items]
            langs = [item["lang"] for item in items]
            options = TranscribeOptions(
                task=task, word_timestamps=key[3], batch_size=self.settings.max_batch
            )
            if served_kind(model) == "ctc":
                options = replace(options, lm=self.settings.lm)
            return model.transcribe_many(files, language=langs, options=options)
        if kind == "speech":
            return [self.spoken(name, item) for item in items]
        from polyspeech.align.spans import align_transcript

        return [
            align_transcript(
                self.models[name], i["samples"], i["lines"], i["lang"], i["granularity"]
            )
            for i in items
        ]

    def server_fault(self, error: InputError) -> ApiError:
        """A library error no field of the request explains: the server's setup is at fault
        (a model's or an LM's file), so its message, which names paths, stays in the log."""
        log.error("a model failed on a request: %s", error)
        return ApiError(500, "internal error", "server_error")

    async def compute(self, key: Hashable, item: dict, blame=None) -> Any:
        """The batcher's answer for ``item``; ``blame`` turns a library :class:`InputError`
        into the answer naming the request's field at fault."""
        self.metrics.waiting.set(self.batcher.waiting)
        try:
            result = await asyncio.wait_for(
                self.batcher.submit(key, item), self.settings.request_timeout
            )
        except Overloaded as busy:
            raise ApiError(
                503,
                str(busy),
                "server_error",
                code="overloaded",
                headers={"Retry-After": str(busy.retry_after)},
            ) from None
        except asyncio.TimeoutError:  # not yet TimeoutError itself in Python 3.10
            raise ApiError(504, f"no answer within {self.settings.request_timeout:g} s",
                           "server_error", code="timeout") from None  # fmt: skip
        except InputError as error:
            raise (blame or self.server_fault)(error) from None
        return result

    def kind_of(self, name: str) -> str | None:
        if name in self.models:
            return served_kind(self.models[name])
        return "tts" if name == ESPEAK else None

    def model_of(self, name: str, kinds: tuple[str, ...]):
        if self.kind_of(name) is None:
            offered = [n for n in [*self.models, ESPEAK] if self.kind_of(n) in kinds]
            raise ApiError(404, f"model {name!r} is not served here; served: "
                           f"{', '.join(offered)}", "invalid_request_error", "model",
                           "model_not_found")  # fmt: skip
        if self.kind_of(name) not in kinds:
            raise bad(f"model {name!r} cannot do this ({self.kind_of(name)})", "model")
        return self.models.get(name)

    def offered_language(self, name: str, value: str | None, code: str | None, required: bool):
        """400 naming ``language`` where CTC model ``name`` lacks ``code``, or where it needs
        one (``required``: it has several languages and cannot identify the speech's)."""
        offered = self.models[name].languages
        listed = ", ".join(offered)
        if code is None:
            if required and len(offered) > 1:
                raise bad(f"language: required for model {name!r}, one of: {listed}", "language")
        elif offered and code not in offered:
            raise bad(
                f"language {value!r}: model {name!r} does not offer it; it offers: {listed}",
                "language",
            )

    def provenance(self, name: str) -> dict | None:
        """Where a served model came from (name, repository, resolved commit, hub); espeak-ng
        is the system's."""
        return self.models[name].source.describe() if name in self.models else None
