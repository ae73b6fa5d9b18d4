//! Command-line parsing: `ACTION --key value ...`, by hand (no clap: the probe
//! stays small and static). Every option is consumed by the action that reads
//! it; whatever is left over at `finish` is an unknown option.

use std::str::FromStr;

/// A bad command line. Each variant names the argument at fault, because the
/// harness shows this message when a scenario file is wrong.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("no action given (usage: isocheck-probe ACTION [--key value ...])")]
    MissingAction,
    #[error("unknown action `{0}`")]
    UnknownAction(String),
    #[error("expected an option like --key, found `{0}`")]
    NotAnOption(String),
    #[error("option --{0} needs a value")]
    MissingValue(String),
    #[error("option --{0} is required")]
    Missing(&'static str),
    #[error("option --{0} given more than once")]
    Repeated(&'static str),
    #[error("option --{key}: bad value `{value}`: {why}")]
    Invalid {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("unknown option --{0} for this action")]
    Unknown(String),
}

/// One `--key value` pair, and whether the action has read it yet.
#[derive(Debug)]
struct Opt {
    key: String,
    value: String,
    used: bool,
}

/// The parsed command line: the action name and its options in order.
#[derive(Debug)]
pub struct Args {
    pub action: String,
    opts: Vec<Opt>,
}

impl Args {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Self, UsageError> {
        let mut argv = argv.into_iter();
        let action = argv.next().ok_or(UsageError::MissingAction)?;
        if action.starts_with('-') {
            return Err(UsageError::MissingAction);
        }
        let mut opts = Vec::new();
        while let Some(token) = argv.next() {
            let Some(body) = token.strip_prefix("--").filter(|b| !b.is_empty()) else {
                return Err(UsageError::NotAnOption(token));
            };
            let (key, value) = match body.split_once('=') {
                Some((key, value)) => (key.to_owned(), value.to_owned()),
                // The value is the next token whatever it looks like, so
                // `--send -x` sends "-x".
                None => match argv.next() {
                    Some(value) => (body.to_owned(), value),
                    None => return Err(UsageError::MissingValue(body.to_owned())),
                },
            };
            opts.push(Opt {
                key,
                value,
                used: false,
            });
        }
        Ok(Self { action, opts })
    }

    /// Every value given for `key`, parsed, in order.
    pub fn all<T: FromStr>(&mut self, key: &'static str) -> Result<Vec<T>, UsageError>
    where
        T::Err: std::fmt::Display,
    {
        let mut values = Vec::new();
        for opt in self.opts.iter_mut().filter(|o| o.key == key) {
            opt.used = true;
            let parsed = opt.value.parse().map_err(|e: T::Err| UsageError::Invalid {
                key,
                value: opt.value.clone(),
                why: e.to_string(),
            })?;
            values.push(parsed);
        }
        Ok(values)
    }

    /// The value of `key` if given (at most once).
    pub fn optional<T: FromStr>(&mut self, key: &'static str) -> Result<Option<T>, UsageError>
    where
        T::Err: std::fmt::Display,
    {
        let mut values = self.all(key)?;
        match values.len() {
            0 => Ok(None),
            1 => Ok(values.pop()),
            _ => Err(UsageError::Repeated(key)),
        }
    }

    /// The value of `key`, which must be given exactly once.
    pub fn required<T: FromStr>(&mut self, key: &'static str) -> Result<T, UsageError>
    where
        T::Err: std::fmt::Display,
    {
        self.optional(key)?.ok_or(UsageError::Missing(key))
    }

    /// Like `all`, but at least one value is required.
    pub fn at_least_one<T: FromStr>(&mut self, key: &'static str) -> Result<Vec<T>, UsageError>
    where
        T::Err: std::fmt::Display,
    {
        let values = self.all(key)?;
        if values.is_empty() {
            return Err(UsageError::Missing(key));
        }
        Ok(values)
    }

    /// A positive pid: 0 and negative values would make kill(2) and friends
    /// act on whole process groups, which no scenario ever means.
    pub fn pid(&mut self, key: &'static str) -> Result<i32, UsageError> {
        let pid: i32 = self.required(key)?;
        if pid <= 0 {
            return Err(UsageError::Invalid {
                key,
                value: pid.to_string(),
                why: "must be a positive pid".into(),
            });
        }
        Ok(pid)
    }

    /// A duration in seconds (float), between 0 and one day.
    pub fn seconds(&mut self, key: &'static str) -> Result<std::time::Duration, UsageError> {
        let secs: f64 = self.required(key)?;
        if !(0.0..=86_400.0).contains(&secs) {
            return Err(UsageError::Invalid {
                key,
                value: secs.to_string(),
                why: "must be between 0 and 86400 seconds".into(),
            });
        }
        Ok(std::time::Duration::from_secs_f64(secs))
    }

    /// A timeout in milliseconds, at most one hour.
    pub fn millis(&mut self, key: &'static str) -> Result<std::time::Duration, UsageError> {
        let ms: u64 = self.required(key)?;
        if ms > 3_600_000 {
            return Err(UsageError::Invalid {
                key,
                value: ms.to_string(),
                why: "must be at most 3600000 ms".into(),
            });
        }
        Ok(std::time::Duration::from_millis(ms))
    }

    /// Rejects any option the action did not read.
    pub fn finish(self) -> Result<(), UsageError> {
        match self.opts.into_iter().find(|o| !o.used) {
            Some(opt) => Err(UsageError::Unknown(opt.key)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, UsageError> {
        Args::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn reads_values_and_rejects_leftovers() {
        let mut args = parse("write --path /a --path=/b --mode x").expect("parses");
        assert_eq!(args.action, "write");
        let paths: Vec<String> = args.all("path").expect("paths");
        assert_eq!(paths, ["/a", "/b"]);
        let err = args.finish().expect_err("mode is unknown");
        assert!(err.to_string().contains("--mode"), "{err}");
    }

    #[test]
    fn names_the_bad_argument() {
        let mut args = parse("kill --pid abc").expect("parses");
        let err = args.pid("pid").expect_err("not a number");
        assert!(err.to_string().contains("--pid"), "{err}");
        let mut args = parse("kill --pid -1").expect("parses");
        assert!(args.pid("pid").is_err(), "kill -1 must be refused");
        assert!(matches!(
            parse("kill --pid"),
            Err(UsageError::MissingValue(k)) if k == "pid"
        ));
        assert!(matches!(parse("kill pid"), Err(UsageError::NotAnOption(_))));
        assert!(matches!(parse(""), Err(UsageError::MissingAction)));
    }

    #[test]
    fn required_and_repeated() {
        let mut args = parse("hostname --set a --set b").expect("parses");
        assert!(matches!(
            args.optional::<String>("set"),
            Err(UsageError::Repeated("set"))
        ));
        let mut args = parse("kill").expect("parses");
        assert!(matches!(args.pid("pid"), Err(UsageError::Missing("pid"))));
    }
}
