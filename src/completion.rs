//! `mailtun completions SHELL`: clap_complete's script for the command line, plus the
//! completion of account names (from `mailtun accounts --names`) where a command takes one.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// bash: account names for `tunnel`, `check`, `password set|delete`, `oauth
/// login|status|logout|secret` and `snippet CLIENT`
/// (with the `--config FILE` given on the line), clap's completion everywhere else.
const BASH: &str = r#"
# Account names from the configuration, where a command takes one.
_mailtun_with_accounts() {
    local i cmd="" pos=0 cur="${COMP_WORDS[COMP_CWORD]}"
    local -a cfg=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --config) cfg=(--config "${COMP_WORDS[i+1]}"); ((i++)) ;;
            --log) ((i++)) ;;
            -*) ;;
            *) if [[ -z $cmd ]]; then cmd=${COMP_WORDS[i]}; else ((pos++)); fi ;;
        esac
    done
    case "$cmd:$pos" in
        tunnel:0 | check:0 | snippet:1 | password:1 | oauth:1)
            local IFS=$'\n'
            COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${cfg[@]}" accounts --names 2>/dev/null)" -- "$cur"))
            return 0
            ;;
    esac
    _mailtun "$@"
}
complete -F _mailtun_with_accounts -o bashdefault -o default mailtun
"#;

/// zsh: the account arguments complete with this function instead of `_default`.
const ZSH_FUNCTION: &str = r#"(( $+functions[_mailtun_account_names] )) ||
_mailtun_account_names() {
    local -a names
    names=(${(f)"$(mailtun accounts --names 2>/dev/null)"})
    _describe 'account' names
}

"#;

const FISH: &str = r#"
# Account names from the configuration, where a command takes one.
complete -c mailtun -n "__fish_seen_subcommand_from tunnel check set delete login status logout secret" -f -a "(mailtun accounts --names 2>/dev/null)"
complete -c mailtun -n "__fish_seen_subcommand_from snippet; and __fish_seen_subcommand_from mutt neomutt alpine mbsync offlineimap fetchmail" -f -a "(mailtun accounts --names 2>/dev/null)"
"#;

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailtun", &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    match shell {
        Shell::Bash => text + BASH,
        Shell::Fish => text + FISH,
        Shell::Zsh => {
            let text = text
                .lines()
                .map(|l| {
                    if l.contains("':account -- ") {
                        l.replace(":_default'", ":_mailtun_account_names'")
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
                + "\n";
            match text.find("if [ \"$funcstack[1]\" = \"_mailtun\" ]") {
                Some(at) => format!("{}{ZSH_FUNCTION}{}", &text[..at], &text[at..]),
                None => text,
            }
        }
        _ => text,
    }
}
