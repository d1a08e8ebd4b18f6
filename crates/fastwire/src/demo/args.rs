//! Arguments of the hidden `fastwire demo-helper` subcommands: positionals and `--name value` pairs.

use std::str::FromStr;

pub struct HelperArgs {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl HelperArgs {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    options.push((name.to_string(), value.clone()));
                }
                None => positional.push(arg.clone()),
            }
        }
        Ok(Self {
            positional,
            options,
        })
    }

    /// The `index`th positional argument, parsed.
    pub fn positional<T: FromStr>(&self, index: usize, what: &str) -> Result<T, String> {
        let raw = self
            .positional
            .get(index)
            .ok_or_else(|| format!("missing {what}"))?;
        raw.parse().map_err(|_| format!("invalid {what}: {raw}"))
    }

    /// `--name value`, parsed; `default` when absent.
    pub fn option<T: FromStr>(&self, name: &str, default: Option<T>) -> Result<T, String> {
        match self.options.iter().rev().find(|(n, _)| n == name) {
            Some((_, raw)) => raw.parse().map_err(|_| format!("invalid --{name}: {raw}")),
            None => default.ok_or_else(|| format!("missing --{name}")),
        }
    }

    /// Fails on options the subcommand does not know, so typos do not pass silently.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .options
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            Some((name, _)) => Err(format!("unknown option --{name}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> HelperArgs {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        HelperArgs::parse(&args).unwrap()
    }

    #[test]
    fn reads_positionals_and_options() {
        let args = parse("ping 10.78.0.2 --count 10 --interval-ms 100");
        assert_eq!(args.positional::<String>(0, "mode").unwrap(), "ping");
        assert_eq!(
            args.positional::<std::net::Ipv4Addr>(1, "target")
                .unwrap()
                .octets(),
            [10, 78, 0, 2]
        );
        assert_eq!(args.option::<u32>("count", None).unwrap(), 10);
        assert_eq!(args.option::<u32>("timeout-ms", Some(1000)).unwrap(), 1000);
        assert!(args.only(&["count", "interval-ms"]).is_ok());
        assert!(args.only(&["count"]).is_err());
    }

    #[test]
    fn reports_bad_input() {
        let args: Vec<String> = vec!["--count".into()];
        assert!(HelperArgs::parse(&args).is_err());
        let args = parse("ping x --count ten");
        assert!(args.positional::<std::net::Ipv4Addr>(1, "target").is_err());
        assert!(args.option::<u32>("count", None).is_err());
        assert!(args.option::<u32>("seconds", None).is_err());
    }
}
