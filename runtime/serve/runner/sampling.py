"""Per-sequence sampler chains over llama.cpp's ``llama_sampler_*`` API (runner side).

Each generating sequence owns one chain built from its request's Ollama options, in the order
llama-cpp-python's ``Llama`` builds it (so greedy output matches ``create_chat_completion``):
penalties, the ``format`` grammar, then greedy (temperature 0), mirostat 1/2, or
top_k -> typical_p -> top_p -> min_p -> temperature -> a seeded draw.
"""
from __future__ import annotations

import random
from typing import Any

from runtime.errors import EngineError
from runtime.serve.engine import SamplingOptions


class Sampler:
    """One ``llama_sampler`` chain; ``sample`` picks (and accepts) the next token."""

    def __init__(self, llama_cpp: Any, chain: Any, seed: int) -> None:
        self._lib = llama_cpp
        self._chain = chain
        self.seed = seed

    @classmethod
    def build(cls, llama_cpp: Any, vocab: Any, n_vocab: int, opts: SamplingOptions, *,
              grammar: str | None, n_ctx: int) -> Sampler:
        """Args:
            llama_cpp: the loaded ``llama_cpp`` module.
            vocab: the model's ``llama_vocab`` pointer (for the grammar).
            n_vocab: vocabulary size.
            opts: the request's sampling options.
            grammar: GBNF text whose root rule is ``root``, or None.
            n_ctx: the sequence's context (``repeat_last_n: -1`` means all of it).
        """
        lib = llama_cpp
        seed = opts.seed if opts.seed >= 0 else random.randrange(0, 2**31 - 1)
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        self = cls(lib, chain, seed)
        try:
            # no further back than the context (llama.cpp allocates a ring of last_n tokens)
            last_n = min(opts.repeat_last_n, n_ctx) if opts.repeat_last_n >= 0 else n_ctx
            self._add(lib.llama_sampler_init_penalties(
                n_vocab, last_n, opts.repeat_penalty, opts.frequency_penalty,
                opts.presence_penalty))
            if grammar:
                g = lib.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
                if not g:
                    raise EngineError("invalid format grammar")
                self._add(g)
            temp = opts.temperature
            if temp < 0:
                self._add(lib.llama_sampler_init_dist(seed))
            elif temp == 0:
                self._add(lib.llama_sampler_init_greedy())
            elif opts.mirostat == 1:
                self._add(lib.llama_sampler_init_mirostat(n_vocab, seed, opts.mirostat_tau,
                                                          opts.mirostat_eta, 100))
            elif opts.mirostat == 2:
                self._add(lib.llama_sampler_init_mirostat_v2(seed, opts.mirostat_tau,
                                                             opts.mirostat_eta))
            else:
                self._add(lib.llama_sampler_init_top_k(opts.top_k))
                self._add(lib.llama_sampler_init_typical(opts.typical_p, 1))
                self._add(lib.llama_sampler_init_top_p(opts.top_p, 1))
                self._add(lib.llama_sampler_init_min_p(opts.min_p, 1))
                self._add(lib.llama_sampler_init_temp(temp))
                self._add(lib.llama_sampler_init_dist(seed))
        except BaseException:
            self.close()
            raise
        return self

    def _add(self, sampler: Any) -> None:
        self._lib.llama_sampler_chain_add(self._chain, sampler)

    def sample(self, ctx: Any, idx: int) -> int:
        """The next token from the logits of batch row ``idx`` (the chain accepts it)."""
        return int(self._lib.llama_sampler_sample(self._chain, ctx, idx))

    def close(self) -> None:
        if self._chain is not None:
            self._lib.llama_sampler_free(self._chain)    # frees the samplers it holds
            self._chain = None
