//! llm-tower facade (work in progress).
