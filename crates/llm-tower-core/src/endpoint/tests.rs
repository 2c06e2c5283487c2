//! The endpoint model's unit tests: building, validation, keys and headers.

use super::*;

#[test]
fn credential_is_prebuilt_and_sensitive() {
    let ep = Endpoint::builder("a", "https://h/v1")
        .api_key(ApiKey::new("sk-secret").unwrap())
        .build()
        .unwrap();
    let (name, value) = ep.credential().unwrap();
    assert_eq!(name, "authorization");
    assert_eq!(value, "Bearer sk-secret");
    assert!(value.is_sensitive());
    let dbg = format!("{ep:?} {:?} {}", ep.api_key(), ep.api_key().unwrap());
    assert!(!dbg.contains("sk-secret"), "{dbg}");
}

#[test]
fn api_key_validation() {
    assert!(ApiKey::new("").is_err());
    assert!(ApiKey::new("abc\r\nx-evil: 1").is_err());
    assert!(ApiKey::new("abc\n").is_err());
    assert!(ApiKey::new("ab\tc").is_err());
    assert!(ApiKey::new(" abc").is_err());
    assert!(ApiKey::new("abcé").is_err());
    assert!(ApiKey::new("sk-proj_AZaz09-._~+/=").is_ok());
}
