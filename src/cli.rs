//! The command line of `llm-tower-gateway`.

/// What the command line asks for.
///
/// ```
/// use llm_tower_gateway::cli::Command;
///
/// let args = ["--config", "gw.yaml", "--check"].map(String::from);
/// let command = Command::parse(args).unwrap();
/// assert_eq!(command, Command::Check { config: "gw.yaml".into(), listen: None });
/// assert!(Command::parse(["--frobnicate".to_owned()]).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Serve `config`, or the built-in demo when there is none.
    Serve {
        /// The configuration file.
        config: Option<String>,
        /// Overrides the file's `listen`.
        listen: Option<String>,
        /// Reload when the file changes (as on SIGHUP).
        watch: bool,
    },
    /// Validate a configuration file and exit: 0 when it is valid, 2 with the error when not.
    Check {
        /// The configuration file.
        config: String,
        /// The `--listen` that serving would use instead of the file's: checked too.
        listen: Option<String>,
    },
    /// Print the version.
    Version,
    /// Print the usage.
    Help,
}

/// The usage text.
pub const USAGE: &str = "\
usage: llm-tower-gateway [--config FILE [--watch]] [--listen ADDR]
       llm-tower-gateway --config FILE --check
       llm-tower-gateway --version | --help

  -c, --config FILE   a .yaml, .yml, .toml or .json configuration file
  -l, --listen ADDR   listen here (overrides the file's `listen`), e.g. 127.0.0.1:8080
      --check         validate the configuration and exit (0 valid, 2 invalid)
      --watch         reload the configuration when the file changes (SIGHUP always does)
  -V, --version       print the version
  -h, --help          print this text

Without --config, serves a self-contained demo against two mock providers on loopback.";

impl Command {
    /// Parses the arguments (without the program name).
    ///
    /// # Errors
    ///
    /// A message for an unknown argument, a missing value, or `--check` without `--config`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut config = None;
        let mut listen = None;
        let mut check = false;
        let mut watch = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--config" | "-c" => config = Some(value("--config")?),
                "--listen" | "-l" => listen = Some(value("--listen")?),
                "--check" => check = true,
                "--watch" => watch = true,
                "--version" | "-V" => return Ok(Self::Version),
                "--help" | "-h" => return Ok(Self::Help),
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if check {
            let config = config.ok_or("--check needs --config FILE")?;
            return Ok(Self::Check { config, listen });
        }
        if watch && config.is_none() {
            return Err("--watch needs --config FILE".into());
        }
        Ok(Self::Serve {
            config,
            listen,
            watch,
        })
    }
}
