//! The hot upgrade's state snapshot (`pdf::snapshot`): any bytes either decode or are
//! refused with a reason, and a decoded snapshot either restores or fails its checks;
//! never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pdf::charging::EngineConfig;
use pdf::population::{Population, PopulationSpec};
use pdf::snapshot::{Snapshot, MAGIC, SCHEMA};
use pdf::tariff::Tariff;

fuzz_target!(|data: &[u8]| {
    let _ = Snapshot::decode(data);
    // Most inputs fail at the magic: also try them as a body of the current schema.
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&SCHEMA.to_le_bytes());
    bytes.extend_from_slice(data);
    if let Ok(snapshot) = Snapshot::decode(&bytes) {
        let population = Population::Generated(PopulationSpec {
            subscribers: 64,
            ..Default::default()
        });
        let _ = snapshot.restore(population, Tariff::default(), EngineConfig::default(), 0);
    }
});
