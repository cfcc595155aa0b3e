"""The AR transformer, its rotary positions and its static KV cache."""

from argen.model.kv_cache import KVCache
from argen.model.rope import apply_rope, rope_table
from argen.model.transformer import SLOT_CLASS, SLOT_TOKEN, SLOT_TRANSITION, Transformer

__all__ = ["KVCache", "SLOT_CLASS", "SLOT_TOKEN", "SLOT_TRANSITION", "Transformer", "apply_rope", "rope_table"]
