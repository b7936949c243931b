#![no_main]
//! The configuration loader on arbitrary text: an error or a configuration, never a
//! panic; a parsed account can always be looked up by name.

use libfuzzer_sys::fuzz_target;
use mailtun::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(std::path::Path::new("fuzz.toml"), text) {
        Ok(config) => {
            for name in config.accounts.keys() {
                assert!(config.account(name).is_ok());
            }
            let _ = config.account("no such account");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
