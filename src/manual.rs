//! `mailtun man`: the manual page mailtun(1) in roff, made from the clap definitions (so
//! it never drifts from `--help`), the exit-code table and the example configuration.

use clap::CommandFactory;

use crate::cli::Cli;

/// The example configuration, also installed under /usr/share/doc/mailtun/examples/.
const EXAMPLE_CONFIG: &str = include_str!("../doc/config.example.toml");

const DESCRIPTION: &str = "mailtun lets a mail client (mutt, neomutt, mbsync, offlineimap, \
fetchmail, alpine) reach IMAP, POP3 and SMTP submission servers without a password ever \
crossing the wire in cleartext: it connects with verified TLS (STARTTLS or the SSL port), \
authenticates with Kerberos (GSSAPI) or another SASL mechanism (SCRAM, CRAM-MD5, \
OAUTHBEARER, EXTERNAL, and PLAIN/LOGIN only inside verified TLS), and hands the \
authenticated session to the client as a pre-authenticated tunnel (IMAP PREAUTH; POP3 and \
SMTP greet the client as already logged in).";

const CONFIG_NOTES: &str = "Mechanism names in auth (lower case): gssapi, scram-sha-256-plus, \
scram-sha-1-plus, scram-sha-256, scram-sha-1, external, oauthbearer, xoauth2, plain, login, \
cram-md5, and the protocols' own password logins: imap-login, user-pass (POP3 USER/PASS) \
and apop. cram-md5 and the three logins are used only when listed by name, never by \
\"auto\"; like PLAIN they are sent only over verified TLS.

Passwords come from password = { command = \"...\" } (first line of its output), from the \
OS keyring (password = { keyring = true }, keyring_store = \"keyutils\" or \
\"secret-service\"; see mailtun password set), or else from a prompt on the controlling \
terminal. An OAuth client secret comes from client_secret = { command = \"...\" } or the \
keyring (client_secret = { keyring = true }; see mailtun oauth secret). The certificate \
is always verified; [accounts.NAME.dangerous] accept_invalid_certs = true turns that off \
and warns on every use.";

/// Text for a roff line: backslashes doubled, a leading `.` or `'` made literal.
fn esc(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// One paragraph per blank-line-separated block of `text`.
fn paragraphs(out: &mut String, text: &str) {
    for (i, p) in text.split("\n\n").enumerate() {
        if i > 0 {
            out.push_str(".PP\n");
        }
        for line in p.lines() {
            out.push_str(&esc(line.trim_end()));
            out.push('\n');
        }
    }
}

fn takes_value(a: &clap::Arg) -> bool {
    a.get_num_args().is_some_and(|n| n.takes_values())
        && !matches!(
            a.get_action(),
            clap::ArgAction::SetTrue | clap::ArgAction::Count | clap::ArgAction::Help
        )
}

/// `-v, --verbose`, `--config FILE`, or `ACCOUNT` for a positional argument.
fn arg_label(a: &clap::Arg) -> String {
    let value = a
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| a.get_id().as_str().to_ascii_uppercase());
    let mut names = Vec::new();
    if let Some(s) = a.get_short() {
        names.push(format!("\\fB\\-{s}\\fR"));
    }
    if let Some(l) = a.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", esc(l)));
    }
    if names.is_empty() {
        return format!("\\fI{}\\fR", esc(&value));
    }
    let mut label = names.join(", ");
    if takes_value(a) {
        label.push_str(&format!(" \\fI{}\\fR", esc(&value)));
    }
    label
}

/// `.TP` entries for the arguments of `cmd` (not the help and version flags).
fn arguments(out: &mut String, cmd: &clap::Command) {
    for a in cmd.get_arguments() {
        let id = a.get_id().as_str();
        if a.is_hide_set() || id == "help" || id == "version" || a.is_global_set() {
            continue;
        }
        out.push_str(".TP\n");
        out.push_str(&arg_label(a));
        out.push('\n');
        let help = a
            .get_long_help()
            .or(a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let values: Vec<String> = a
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        let mut text = help;
        if !values.is_empty() && takes_value(a) {
            text.push_str(&format!(" One of: {}.", values.join(", ")));
        }
        if let Some(d) = a.get_default_values().first().filter(|_| takes_value(a)) {
            text.push_str(&format!(" Default: {}.", d.to_string_lossy()));
        }
        paragraphs(out, text.trim());
    }
}

/// `COMMAND [OPTIONS] ARGS...` for the synopsis of a subcommand.
fn usage(path: &str, cmd: &clap::Command) -> String {
    let mut words = vec![format!("\\fB{}\\fR", esc(path))];
    if cmd.get_arguments().any(|a| {
        a.get_long().is_some() && !a.is_global_set() && !a.is_hide_set() && a.get_id() != "help"
    }) {
        words.push("[\\fIOPTIONS\\fR]".into());
    }
    for a in cmd.get_positionals() {
        let v = a
            .get_value_names()
            .and_then(|v| v.first())
            .map(|v| v.to_string())
            .unwrap_or_else(|| a.get_id().as_str().to_ascii_uppercase());
        words.push(format!("\\fI{}\\fR", esc(&v)));
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        words.push("\\fICOMMAND\\fR".into());
    }
    words.join(" ")
}

/// One `.SS` per visible command (and per subcommand of it).
fn commands(out: &mut String, path: &str, cmd: &clap::Command) {
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let path = format!("{path} {}", sub.get_name());
        out.push_str(&format!(".SS \"{}\"\n", esc(&path)));
        out.push_str(&usage(&path, sub));
        out.push_str("\n.PP\n");
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            paragraphs(out, &about.to_string());
        }
        arguments(out, sub);
        commands(out, &path, sub);
    }
}

/// The whole page.
pub fn page() -> String {
    let mut cmd = Cli::command();
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let mut out = String::new();
    out.push_str(&format!(
        ".TH MAILTUN 1 \"\" \"mailtun {}\" \"User Commands\"\n",
        esc(&version)
    ));
    out.push_str(".SH NAME\nmailtun \\- ");
    out.push_str(&esc(env!("CARGO_PKG_DESCRIPTION")));
    out.push_str("\n.SH SYNOPSIS\n\\fBmailtun\\fR [\\fB\\-\\-config\\fR \\fIFILE\\fR] [\\fB\\-v\\fR...] [\\fB\\-\\-log\\fR \\fIFILE\\fR] \\fICOMMAND\\fR ...\n");
    out.push_str(".SH DESCRIPTION\n");
    paragraphs(&mut out, DESCRIPTION);
    out.push_str(".PP\nA mail client runs \\fBmailtun tunnel\\fR \\fIACCOUNT\\fR as its tunnel command; \\fBmailtun snippet\\fR prints the lines to paste into the client's configuration.\n");
    out.push_str(".SH OPTIONS\nThese options go before or after the command.\n");
    for a in cmd.get_arguments().filter(|a| a.is_global_set()) {
        out.push_str(".TP\n");
        out.push_str(&arg_label(a));
        out.push('\n');
        if let Some(h) = a.get_long_help().or(a.get_help()) {
            paragraphs(&mut out, &h.to_string());
        }
    }
    out.push_str(".TP\n\\fB\\-h\\fR, \\fB\\-\\-help\\fR\nPrint help (of a command, after it).\n.TP\n\\fB\\-V\\fR, \\fB\\-\\-version\\fR\nPrint the version.\n");
    out.push_str(".SH COMMANDS\n");
    commands(&mut out, "mailtun", &cmd);
    out.push_str(".SH CONFIGURATION\n");
    out.push_str("The configuration file (TOML) is \\fB\\-\\-config\\fR \\fIFILE\\fR, else $MAILTUN_CONFIG, else $XDG_CONFIG_HOME/mailtun/config.toml (~/.config/mailtun/config.toml). It holds one \\fB[accounts.\\fR\\fINAME\\fR\\fB]\\fR table per account; its keys, with their meaning and defaults:\n");
    out.push_str(".PP\n.nf\n.RS 2\n");
    for line in EXAMPLE_CONFIG.lines() {
        out.push_str(&esc(line));
        out.push('\n');
    }
    out.push_str(".RE\n.fi\n.PP\nThis example is installed as /usr/share/doc/mailtun/examples/config.toml.\n.PP\n");
    paragraphs(&mut out, CONFIG_NOTES);
    out.push_str(".SH EXIT STATUS\n");
    for (code, meaning) in mailtun::error::exit_codes() {
        out.push_str(&format!(".TP\n\\fB{code}\\fR\n{}\n", esc(meaning)));
    }
    out.push_str(&format!(".PP\n{}\n", esc(mailtun::error::EXIT_SIGNAL_NOTE)));
    out.push_str(".SH ENVIRONMENT\n.TP\n\\fBMAILTUN_CONFIG\\fR\nThe configuration file, when \\fB\\-\\-config\\fR is not given.\n.TP\n\\fBKRB5CCNAME\\fR, \\fBKRB5_CONFIG\\fR\nThe Kerberos credential cache and configuration (unless the account names a \\fBccache\\fR).\n");
    out.push_str(".SH FILES\n.TP\n\\fI~/.config/mailtun/config.toml\\fR\nThe default configuration file.\n.TP\n\\fI/usr/share/doc/mailtun/examples/config.toml\\fR\nAn example configuration.\n");
    out.push_str(".SH SEE ALSO\n\\fBmutt\\fR(1), \\fBneomutt\\fR(1), \\fBmbsync\\fR(1), \\fBofflineimap\\fR(1), \\fBfetchmail\\fR(1), \\fBalpine\\fR(1), \\fBkinit\\fR(1); README.md in mailtun's source for the security model, the Docker realm and the tests.\n");
    out
}
