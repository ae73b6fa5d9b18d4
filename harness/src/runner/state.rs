//! What a half holds while it runs, shared by its phases (`half`) and
//! its interactions (`interact`).

use super::error::ObserveError;
use super::Which;
use crate::fixtures::{LeakDir, RoBindSource, SecretDir};
use crate::loopdev::LoopDevice;
use crate::nettestbed::NetTestbed;
use crate::scenario::{ContainerOverrides, Scenario};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// One half in flight: its scenario, what it made for itself and what it
/// has seen so far.
pub(super) struct Half<'s> {
    pub(super) s: &'s Scenario,
    pub(super) which: Which,
    pub(super) overrides: &'s ContainerOverrides,
    /// Fresh for each half: names its marker mount and fixture contents.
    pub(super) token: String,
    pub(super) deadline: Instant,
    /// The `{placeholders}` of the scenario's probe arguments.
    pub(super) vars: BTreeMap<String, String>,
    /// What the stand-in host saw: the observation's `host` object.
    pub(super) host: Map<String, Value>,
    /// The observation being built (`probe`, `exit`, `cgroup`...).
    pub(super) doc: Map<String, Value>,
    pub(super) fixtures: HalfFixtures,
}

/// The fixtures a scenario asks for, made for one half.
#[derive(Default)]
pub(super) struct HalfFixtures {
    /// The image the container runs on (a copy when the control writes it).
    pub(super) image: PathBuf,
    pub(super) robind: Option<RoBindSource>,
    pub(super) secret: Option<SecretDir>,
    pub(super) leak: Option<LeakDir>,
    pub(super) loop_device: Option<LoopDevice>,
}

impl HalfFixtures {
    /// The leaked-fd fixture's directory, open without O_CLOEXEC (for the
    /// one spawn or exec it must cross), when the scenario has it.
    pub(super) fn open_leak(&self) -> Result<Option<std::os::fd::OwnedFd>, ObserveError> {
        match &self.leak {
            Some(dir) => Ok(Some(dir.open_inheritable()?)),
            None => Ok(None),
        }
    }
}

/// The network testbed, made by `start_network` for scenarios that need it.
pub(super) fn testbed(net: &mut Option<NetTestbed>) -> Result<&mut NetTestbed, ObserveError> {
    net.as_mut()
        .ok_or(ObserveError::Missing("network testbed missing"))
}
