//! llm-tower-fallback (work in progress).
