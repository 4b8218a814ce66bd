//! Persistence: whether retained messages and sessions outlive a restart,
//! where, and how often they are saved.

use super::Parser;
use super::keys::{
    Key,
    Reload::{Applied, Restart},
    Scope::Global,
};
use super::reader::Line;
use crate::persist::{Mode, OnDamage};

pub(super) const KEYS: &[Key] = &[
    Key::set(
        "persistence",
        Global,
        Restart,
        "keep retained messages and sessions across restarts",
        persistence,
    ),
    Key::set(
        "retained_persistence",
        Global,
        Restart,
        "the same as `persistence` (mosquitto 2.0 reads it so)",
        persistence,
    ),
    Key::set(
        "persistence_location",
        Global,
        Restart,
        "the directory of the persistence file",
        |p, l| {
            p.s.persistence.location = l.value.into();
            Ok(())
        },
    )
    .text(),
    Key::set(
        "persistence_file",
        Global,
        Restart,
        "the persistence file's name",
        |p, l| {
            p.s.persistence.file = l.value.into();
            Ok(())
        },
    )
    .text(),
    Key::set(
        "autosave_interval",
        Global,
        Applied,
        "seconds (or changes) between saves",
        |p, l| {
            p.s.persistence.autosave_interval = l.number()?;
            Ok(())
        },
    ),
    Key::set(
        "autosave_on_changes",
        Global,
        Applied,
        "count `autosave_interval` in changes instead of seconds",
        |p, l| {
            p.s.persistence.autosave_on_changes = l.flag()?;
            Ok(())
        },
    ),
    Key::set(
        "persistence_mode",
        Global,
        Restart,
        "a snapshot now and then, or a journal that loses nothing acknowledged",
        |p, l| {
            p.s.persistence.mode = match l.value {
                "snapshot" => Mode::Snapshot,
                "journal" => Mode::Journal,
                v => {
                    return Err(format!("`{}` takes snapshot or journal, not `{v}`", l.key));
                }
            };
            Ok(())
        },
    )
    .own(),
    Key::set(
        "persistence_damaged",
        Global,
        Restart,
        "what to do when the persistence file does not load",
        |p, l| {
            p.s.persistence.on_damage = match l.value {
                "refuse" => OnDamage::Refuse,
                "start_empty" => OnDamage::StartEmpty,
                v => {
                    return Err(format!(
                        "`{}` takes refuse or start_empty, not `{v}`",
                        l.key
                    ));
                }
            };
            Ok(())
        },
    )
    .own(),
];

fn persistence(p: &mut Parser, l: &Line) -> Result<(), String> {
    p.s.persistence.enabled = l.flag()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::persist::OnDamage;
    use std::path::Path;

    #[test]
    fn persistence_keys() {
        let s = parse("", "t.conf").unwrap();
        assert!(!s.persistence.enabled);
        assert_eq!(s.persistence.autosave_interval, 1800);
        let s = parse(
            "persistence true\npersistence_location /var/lib/roost/\npersistence_file r.db\n\
             autosave_interval 100\nautosave_on_changes true\npersistence_damaged start_empty\n",
            "t.conf",
        )
        .unwrap();
        let p = &s.persistence;
        assert!(p.enabled && p.autosave_on_changes);
        assert_eq!(p.path(), Path::new("/var/lib/roost/r.db"));
        assert_eq!(p.autosave_interval, 100);
        assert_eq!(p.on_damage, OnDamage::StartEmpty);
        let e = parse("persistence_damaged ignore\n", "t.conf").unwrap_err();
        assert!(e.starts_with("t.conf:1: "), "{e}");
    }
}
