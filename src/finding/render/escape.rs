//! Making text from a log inert in each rendering: chat markdown, plain-text email and
//! ASCII subject lines. CloudTrail's user names, session names and ARNs, and the names of
//! the GeoIP database, are attacker-controlled text.

/// Makes text from a log inert in chat markdown (Slack's mrkdwn, which Chatbot renders,
/// and the Markdown of Teams):
///
/// - `&`, `<`, `>` become entities: Slack's own escaping, which disarms every control
///   sequence (`<!channel>`, `<@U123>`, `<#C123>`, `<http://evil|a link>`) and quotes;
/// - `@` where a mention could start (not inside a word, or before `channel`, `here`,
///   `everyone`) becomes `＠`, so `@channel` can never ping, while `alice@example.com`
///   stays as it is;
/// - formatting characters become look-alikes that format nothing: `` ` `` `*` `~` `[` `]`,
///   and `_` at the edge of a word (inside a word, as in `AWSReservedSSO_Admin_1a2b`,
///   Slack does not italicise, so it is kept);
/// - line breaks and other control characters become spaces (no forged lines), and
///   invisible or bidirectional formatting characters become `�` (no hidden text).
///
/// Bare URLs are left as they are: chat clients show them as what they are.
pub fn escape_for_chat(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| chars[j]);
        let next = chars.get(i + 1).copied();
        let in_word = |x: Option<char>| x.is_some_and(char::is_alphanumeric);
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' if mention_at(&chars, i) => out.push('＠'),
            '`' => out.push('ˋ'),
            '*' => out.push('∗'),
            '~' => out.push('∼'),
            '[' => out.push('［'),
            ']' => out.push('］'),
            '_' if !in_word(prev) || !in_word(next) => out.push('＿'),
            c if is_invisible_format(c) => out.push('\u{FFFD}'),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An `@` where chat would read a mention: not inside a word (`alice@example.com` is
/// an address), or right before a broadcast word (`x@channel`, to be safe).
fn mention_at(chars: &[char], i: usize) -> bool {
    let after_word = i
        .checked_sub(1)
        .and_then(|j| chars.get(j))
        .is_some_and(|c| c.is_alphanumeric());
    chars.get(i) == Some(&'@') && (!after_word || starts_broadcast(&chars[i + 1..]))
}

fn starts_broadcast(rest: &[char]) -> bool {
    ["channel", "here", "everyone", "group"].iter().any(|word| {
        rest.len() >= word.len()
            && rest
                .iter()
                .zip(word.chars())
                .all(|(a, b)| a.to_ascii_lowercase() == b)
    })
}

/// Zero-width and bidirectional formatting characters: they hide or reorder text.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{00AD}')
}

/// Makes text from a log safe in a plain-text email or a message attribute: control
/// characters (line breaks included, so no forged lines) become spaces, invisible and
/// bidirectional formatting characters become `�`, and XML-invalid `U+FFFE`/`U+FFFF`
/// (refused by SNS) become `�` too.
pub fn sanitize_plain(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            c if is_invisible_format(c) || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// Makes text from a log safe in the plain-text email: [`sanitize_plain`], and, because
/// emails get forwarded into chat (Slack and Teams channels have email addresses), no
/// mention and no markup either: `<` `>` become `‹` `›` and a mention's `@` becomes `＠`
/// (`alice@example.com` is kept).
pub fn escape_for_email(s: &str) -> String {
    let chars: Vec<char> = sanitize_plain(s).chars().collect();
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            '<' => '‹',
            '>' => '›',
            '@' if mention_at(&chars, i) => '＠',
            c => c,
        })
        .collect()
}

/// ASCII on one line: Latin letters lose their accents, control characters and
/// whitespace runs become one space, anything else is dropped. Subjects end up in chat
/// too (forwarded email, Chatbot's default rendering), so `<` `>` become `(` `)` and a
/// mention's `@` becomes `(at)`.
pub(crate) fn ascii_line(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '<' {
            out.push('(');
        } else if c == '>' {
            out.push(')');
        } else if mention_at(&chars, i) {
            out.push_str("(at)");
        } else if c.is_ascii_graphic() {
            out.push(c);
        } else if c.is_whitespace() || c.is_control() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else if let Some(folded) = fold_latin(c) {
            out.push_str(folded);
        }
    }
    out.trim().to_owned()
}

/// The ASCII spelling of the accented Latin letters of place and person names.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'Ā' | 'Ă' | 'Ą' => "A",
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'Æ' => "AE",
        'æ' => "ae",
        'Ç' | 'Ć' | 'Č' => "C",
        'ç' | 'ć' | 'č' => "c",
        'Ď' | 'Đ' | 'Ð' => "D",
        'ď' | 'đ' | 'ð' => "d",
        'È'..='Ë' | 'Ē' | 'Ė' | 'Ę' | 'Ě' => "E",
        'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'Ğ' => "G",
        'ğ' => "g",
        'Ì'..='Ï' | 'Ī' | 'İ' => "I",
        'ì'..='ï' | 'ī' | 'ı' => "i",
        'Ł' => "L",
        'ł' => "l",
        'Ñ' | 'Ń' | 'Ň' => "N",
        'ñ' | 'ń' | 'ň' => "n",
        'Ò'..='Ö' | 'Ø' | 'Ō' | 'Ő' => "O",
        'ò'..='ö' | 'ø' | 'ō' | 'ő' => "o",
        'Œ' => "OE",
        'œ' => "oe",
        'Ř' => "R",
        'ř' => "r",
        'Ś' | 'Ş' | 'Š' | 'Ș' => "S",
        'ś' | 'ş' | 'š' | 'ș' => "s",
        'ß' => "ss",
        'Ţ' | 'Ť' | 'Ț' => "T",
        'ţ' | 'ť' | 'ț' => "t",
        'Þ' => "Th",
        'þ' => "th",
        'Ù'..='Ü' | 'Ū' | 'Ů' | 'Ű' => "U",
        'ù'..='ü' | 'ū' | 'ů' | 'ű' => "u",
        'Ý' | 'Ÿ' => "Y",
        'ý' | 'ÿ' => "y",
        'Ź' | 'Ż' | 'Ž' => "Z",
        'ź' | 'ż' | 'ž' => "z",
        '×' => "x",
        '–' | '—' => "-",
        '‘' | '’' => "'",
        '“' | '”' => "\"",
        '…' => "...",
        '→' => "->",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_for_chat_disarms_hostile_log_text() {
        // (case, input, expected output)
        let cases: &[(&str, &str, &str)] = &[
            ("plain key", "AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
            (
                "ARN",
                "arn:aws:iam::123456789012:user/alice",
                "arn:aws:iam::123456789012:user/alice",
            ),
            (
                "SSO role keeps inner underscores",
                "AWSReservedSSO_Admin_1a2b/alice@example.com",
                "AWSReservedSSO_Admin_1a2b/alice@example.com",
            ),
            ("@channel", "hi @channel", "hi ＠channel"),
            ("@here at start", "@here", "＠here"),
            ("@everyone glued to a word", "x@everyone", "x＠everyone"),
            ("@Channel any case", "a @Channel", "a ＠Channel"),
            ("user mention", "ping @alice", "ping ＠alice"),
            ("special mention", "<!channel>", "&lt;!channel&gt;"),
            ("here mention", "<!here|here>", "&lt;!here|here&gt;"),
            ("user id mention", "<@U024BE7LH>", "&lt;＠U024BE7LH&gt;"),
            (
                "masked link",
                "<http://evil.example|Open the console>",
                "&lt;http://evil.example|Open the console&gt;",
            ),
            (
                "markdown link",
                "[console](http://evil.example)",
                "［console］(http://evil.example)",
            ),
            ("bold", "*urgent*", "∗urgent∗"),
            ("strike", "~gone~", "∼gone∼"),
            ("italic", "_quiet_", "＿quiet＿"),
            ("code breakout", "`x` ```y```", "ˋxˋ ˋˋˋyˋˋˋ"),
            ("blockquote", "> quoted", "&gt; quoted"),
            ("entity", "a &amp; b", "a &amp;amp; b"),
            (
                "newline forgery",
                "user\n*Severity* low",
                "user ∗Severity∗ low",
            ),
            ("carriage return and tab", "a\r\tb", "a  b"),
            ("bidi override", "abc\u{202E}fed", "abc\u{FFFD}fed"),
            ("zero-width space", "@\u{200B}channel", "＠\u{FFFD}channel"),
            ("non-Latin text kept", "München 東京", "München 東京"),
        ];
        for (case, input, want) in cases {
            assert_eq!(escape_for_chat(input), *want, "case {case}");
        }
    }

    #[test]
    fn escaped_text_never_carries_control_sequences() {
        let hostile = [
            "<!channel>",
            "<!here>",
            "<!everyone>",
            "<!subteam^S123|@team>",
            "@channel @here @everyone",
            "<http://evil|x>",
            "<mailto:a@b|x>",
            "[x](http://evil)",
            "**x** __y__ ~~z~~ `c`",
            "line1\nline2\r\n> quote",
            "\u{202E}\u{2066}\u{200B}\u{FEFF}",
        ];
        for input in hostile {
            let out = escape_for_chat(input);
            for bad in [
                "<",
                ">",
                "@channel",
                "@here",
                "@everyone",
                "`",
                "*",
                "~",
                "[",
                "\n",
                "\r",
                "\u{202E}",
                "\u{200B}",
            ] {
                assert!(
                    !out.contains(bad),
                    "escape_for_chat({input:?}) = {out:?} still contains {bad:?}"
                );
            }
        }
    }

    #[test]
    fn escape_for_email_disarms_text_bound_for_a_forwarded_email() {
        let cases = [
            ("address kept", "alice@example.com", "alice@example.com"),
            (
                "ARN kept",
                "arn:aws:iam::123456789012:user/bob",
                "arn:aws:iam::123456789012:user/bob",
            ),
            ("special mention", "<!channel>", "‹!channel›"),
            (
                "masked link",
                "<http://evil.example|click>",
                "‹http://evil.example|click›",
            ),
            (
                "broadcast",
                "hi @here and x@channel",
                "hi ＠here and x＠channel",
            ),
            (
                "forged line",
                "bob\nAll clear: close this",
                "bob All clear: close this",
            ),
            ("bidi", "abc\u{202E}def", "abc\u{FFFD}def"),
        ];
        for (case, input, want) in cases {
            assert_eq!(escape_for_email(input), want, "{case}");
        }
    }

    #[test]
    fn sanitize_plain_keeps_text_on_its_line() {
        let cases = [
            (
                "newline",
                "alice\nAll clear, ignore this",
                "alice All clear, ignore this",
            ),
            ("bidi", "evil\u{202E}txt.exe", "evil\u{FFFD}txt.exe"),
            ("xml-invalid", "a\u{FFFF}b", "a\u{FFFD}b"),
            ("plain", "alice@example.com", "alice@example.com"),
        ];
        for (case, input, want) in cases {
            assert_eq!(sanitize_plain(input), want, "{case}");
        }
    }
}
