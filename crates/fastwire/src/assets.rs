//! `fastwire generate-assets DIR` (hidden): the man pages and shell completions a package installs,
//! generated from the command-line definition itself (clap_mangen, clap_complete), so they never drift
//! from `--help`. packaging/deb/build.sh calls it before cargo-deb.

use std::path::Path;

use clap::Command;
use clap_complete::Shell;

/// Writes DIR/man/fastwire.8 and one page per subcommand (fastwire-up.8, ...), and
/// DIR/completions/{fastwire.bash, _fastwire, fastwire.fish}.
pub fn generate(command: Command, dir: &Path) -> Result<(), String> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let mut command = command.name("fastwire");
    command.build();
    write_man(&command, "fastwire", &man)?;
    for sub in command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("fastwire-{}", sub.get_name());
        write_man(&sub.clone().bin_name(name.clone()), &name, &man)?;
    }
    for (shell, file) in [
        (Shell::Bash, "fastwire.bash"),
        (Shell::Zsh, "_fastwire"),
        (Shell::Fish, "fastwire.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "fastwire", &mut out);
        write(&completions.join(file), &out)?;
    }
    Ok(())
}

fn write_man(command: &Command, name: &str, dir: &Path) -> Result<(), String> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone())
        .title(name)
        .section("8")
        .render(&mut out)
        .map_err(|e| format!("cannot render the man page of {name}: {e}"))?;
    write(&dir.join(format!("{name}.8")), &out)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn man_pages_and_completions_cover_the_commands() {
        let dir = std::env::temp_dir().join(format!("fastwire-assets-{}", std::process::id()));
        super::generate(crate::cli::command(), &dir).unwrap();
        let page = std::fs::read_to_string(dir.join("man/fastwire.8")).unwrap();
        assert!(
            page.contains(".TH fastwire 8"),
            "{}",
            &page[..200.min(page.len())]
        );
        assert!(page.contains("metrics"), "the options are in the page");
        let up = std::fs::read_to_string(dir.join("man/fastwire-up.8")).unwrap();
        assert!(up.contains("wg\\-quick"), "the about text, roff-escaped");
        assert!(!dir.join("man/fastwire-help.8").exists());
        assert!(
            !dir.join("man/fastwire-demo-helper.8").exists(),
            "hidden commands have no page"
        );
        let bash = std::fs::read_to_string(dir.join("completions/fastwire.bash")).unwrap();
        assert!(bash.contains("syncconf") && bash.contains("--metrics-listen"));
        assert!(
            dir.join("completions/_fastwire").exists()
                && dir.join("completions/fastwire.fish").exists()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
