//! llm-tower-retry (work in progress).
