//! What an installed mailtun brings besides the binary: the manual page and the shell
//! completion, both generated from the command line's definition.

use std::path::Path;
use std::process::Command;

use crate::harness::mailtun_bin;

/// `mailtun ARGS` (no harness needed), which must succeed; its stdout.
fn mailtun_stdout(args: &[&str]) -> String {
    let out = Command::new(mailtun_bin())
        .args(args)
        .env_remove("MAILTUN_CONFIG")
        .output()
        .expect("run mailtun");
    assert!(
        out.status.success(),
        "mailtun {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_manual_page_renders_with_every_command_the_exit_codes_and_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("mailtun.1");
    std::fs::write(&page, mailtun_stdout(&["man"])).unwrap();
    let out = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "200")
        .env_remove("MAN_KEEP_FORMATTING")
        .env("PAGER", "cat")
        .output()
        .expect("run man (package man-db)");
    let text = String::from_utf8_lossy(&out.stdout);
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && warnings.is_empty(), "{warnings}");
    // Every visible command, with its arguments, from the same definition as --help.
    let help = mailtun_stdout(&["--help"]);
    let commands: Vec<&str> = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.contains(&"completions"), "{help}");
    for c in &commands {
        assert!(
            text.contains(&format!("mailtun {c}\n")),
            "no section for {c}:\n{text}"
        );
    }
    for expected in [
        "mailtun password set [OPTIONS] ACCOUNT",
        "mailtun oauth secret [OPTIONS] ACCOUNT",
        "mailtun oauth login [OPTIONS] ACCOUNT",
        "mailtun snippet CLIENT ACCOUNT",
        "--connect ADDR",
        "EXIT STATUS",
        "policy refusal",
        "CONFIGURATION",
        "min_protection",
        "[accounts.work.gssapi]",
    ] {
        assert!(text.contains(expected), "no {expected:?}:\n{text}");
    }
}

/// The words bash's completion offers for `words` (the last one being completed), with
/// the script `mailtun completions bash` prints and `mailtun` found on PATH.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let bin_dir = Path::new(mailtun_bin()).parent().unwrap();
    let array: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source {script}\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\nCOMP_LINE=\"${{COMP_WORDS[*]}}\"\nCOMP_POINT=${{#COMP_LINE}}\nf=$(complete -p mailtun | sed -n 's/.*-F \\([^ ]*\\) .*/\\1/p')\n\"$f\" mailtun \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script = script.display(),
        words = array.join(" "),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .env(
            "PATH",
            format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap()),
        )
        .env_remove("MAILTUN_CONFIG")
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_commands_and_the_account_names_of_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("mailtun.bash");
    std::fs::write(&script, mailtun_stdout(&["completions", "bash"])).unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[accounts.work]\nhost = \"mail.example.org\"\nuser = \"alice\"\n\
         [accounts.home]\nprotocol = \"pop3\"\nhost = \"pop.example.net\"\nuser = \"al\"\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    assert_eq!(bash_completes(&script, &["mailtun", "tun"]), ["tunnel"]);
    assert_eq!(bash_completes(&script, &["mailtun", "sn"]), ["snippet"]);
    assert_eq!(
        bash_completes(&script, &["mailtun", "--config", c, "tunnel", ""]),
        ["home", "work"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "--config", c, "check", "w"]),
        ["work"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "--config", c, "snippet", "mutt", "h"]),
        ["home"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "--config", c, "password", "set", ""]),
        ["home", "work"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "oauth", "se"]),
        ["secret"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "--config", c, "oauth", "secret", ""]),
        ["home", "work"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "--config", c, "oauth", "login", "w"]),
        ["work"]
    );
    assert_eq!(
        bash_completes(&script, &["mailtun", "snippet", "neo"]),
        ["neomutt"]
    );
}

#[test]
fn zsh_and_fish_completions_also_ask_for_the_account_names() {
    let zsh = mailtun_stdout(&["completions", "zsh"]);
    assert!(zsh.contains(":_mailtun_account_names'"), "{zsh}");
    let defined = zsh.find("_mailtun_account_names() {").unwrap();
    assert!(
        defined < zsh.find("if [ \"$funcstack[1]\"").unwrap(),
        "{zsh}"
    );
    // `oauth secret ACCOUNT` (and the other oauth commands) complete account names too.
    // tunnel, check, snippet, password set|delete, oauth login|status|logout|secret.
    assert_eq!(zsh.matches(":_mailtun_account_names'").count(), 9, "{zsh}");
    let fish = mailtun_stdout(&["completions", "fish"]);
    assert!(fish.contains("login status logout secret"), "{fish}");
    assert!(
        fish.contains("(mailtun accounts --names 2>/dev/null)"),
        "{fish}"
    );
}
