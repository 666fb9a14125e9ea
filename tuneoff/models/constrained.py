"""Constrained decoding: at each step only tokens that keep the reply a prefix of schema-valid JSON.

The grammar work is lm-format-enforcer's (`JsonSchemaParser` + `TokenEnforcer`). Its own transformers
glue (`integrations.transformers`) imports names transformers 5 removed, so the two small pieces it
holds are here: the tokenizer's token table (built once per tokenizer, a pass over the vocabulary) and
the `prefix_allowed_tokens_fn` that `generate` calls per row and step.
"""

from __future__ import annotations

import json
import weakref
from typing import Callable

from ..errors import MissingPackageError

_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
MAX_WHITESPACE = 2
"""Consecutive whitespace characters allowed between JSON tokens: a small random model otherwise fills
its token budget with indentation before it closes the object."""


def _enforcer_modules():
    try:
        from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser
        from lmformatenforcer.tokenenforcer import TokenEnforcer, TokenEnforcerTokenizerData
    except ImportError:
        raise MissingPackageError("constrained decoding needs lm-format-enforcer",
                                  hint="pip install 'lm-format-enforcer>=0.11'") from None
    return CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer, TokenEnforcerTokenizerData


def tokenizer_table(tokenizer):
    """lm-format-enforcer's view of a tokenizer: each regular token's text and whether it starts a word."""
    if tokenizer in _TABLES:
        return _TABLES[tokenizer]
    *_, TokenEnforcerTokenizerData = _enforcer_modules()
    # decoding "0" + token and dropping the "0" shows a word-start token's leading space, which
    # decoding the token alone strips (SentencePiece)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    for idx in range(len(tokenizer)):
        if idx in special:
            continue
        after_zero = tokenizer.decode([zero, idx])[1:]
        regular.append((idx, after_zero, len(after_zero) > len(tokenizer.decode([idx]))))

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids).rstrip("\ufffd")  # a half-written UTF-8 character is not text yet

    table = TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, len(tokenizer))
    _TABLES[tokenizer] = table
    return table


def json_schema_constraint(tokenizer, schema: str | dict) -> Callable:
    """A `prefix_allowed_tokens_fn` for `generate`: each row may only continue schema-valid JSON, and may
    end (EOS) only once the object is complete. A fresh enforcer per call: its state is per prompt."""
    ParserConfig, JsonSchemaParser, TokenEnforcer, _ = _enforcer_modules()
    schema = json.loads(schema) if isinstance(schema, str) else schema
    parser = JsonSchemaParser(schema, config=ParserConfig(max_consecutive_whitespaces=MAX_WHITESPACE))
    enforcer = TokenEnforcer(tokenizer_table(tokenizer), parser)

    def allowed(batch_id: int, sent) -> list[int]:
        return enforcer.get_allowed_tokens(sent.tolist()).allowed_tokens

    return allowed
