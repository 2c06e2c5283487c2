//! llm-tower-core (work in progress).
