//! llm-tower-auth (work in progress).
