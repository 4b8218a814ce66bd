//! `pid_file`: the broker's process id in a file, for init scripts and
//! monitors that look for one (systemd does not need it). Removed when the
//! broker stops; a file that cannot be written stops start-up, as in
//! mosquitto.

use std::path::{Path, PathBuf};

pub struct PidFile(PathBuf);

impl PidFile {
    pub fn create(path: &Path) -> Result<PidFile, String> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("pid_file {}: {e}", path.display()))?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
