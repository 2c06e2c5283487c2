//! llm-tower-mock (work in progress).
