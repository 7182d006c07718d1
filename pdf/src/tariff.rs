//! Rating: what a unit of each service costs, and how much is granted at a time.
//!
//! Services are named by Rating-Group (DESIGN.md section 3: 1 voice, 10 data, 20
//! messaging). Prices are integer minor units: per second, per megabyte (10^6 octets) or per
//! event. The cost of one reported usage is rounded up to a whole minor unit, per report;
//! the loadgen computes the expected charge with this same function, so the books check is
//! exact.

use serde::Deserialize;

/// What a service is counted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Seconds (CC-Time).
    Second,
    /// Megabytes of 10^6 octets (CC-Total-Octets).
    Megabyte,
    /// Events (CC-Service-Specific-Units).
    Event,
}

impl Unit {
    /// A service unit holding `units` in this unit's field (CC-Time, CC-Total-Octets or
    /// CC-Service-Specific-Units).
    pub fn service_unit(self, units: u64) -> protocol::messages::ServiceUnit {
        let mut unit = protocol::messages::ServiceUnit::default();
        match self {
            Self::Second => unit.cc_time = Some(u32::try_from(units).unwrap_or(u32::MAX)),
            Self::Megabyte => unit.cc_total_octets = Some(units),
            Self::Event => unit.cc_service_specific_units = Some(units),
        }
        unit
    }

    /// How many of the counted units (seconds, octets, events) one priced unit is.
    fn scale(self) -> u64 {
        match self {
            Self::Second | Self::Event => 1,
            Self::Megabyte => 1_000_000,
        }
    }
}

/// One rated service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its Rating-Group.
    pub rating_group: u32,
    /// A name for reports.
    pub name: String,
    /// What it is counted in.
    pub unit: Unit,
    /// Price per unit (per second, per megabyte, per event), in minor units.
    pub price: u64,
    /// Units granted per reservation, in counted units (seconds, octets, events).
    pub grant: u64,
}

/// The tariff: one entry per service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tariff {
    /// The services.
    #[serde(rename = "service")]
    pub services: Vec<Service>,
}

impl Default for Tariff {
    fn default() -> Self {
        Self {
            services: vec![
                Service {
                    rating_group: 1,
                    name: "voice".into(),
                    unit: Unit::Second,
                    price: 2,
                    grant: 60,
                },
                Service {
                    rating_group: 10,
                    name: "data".into(),
                    unit: Unit::Megabyte,
                    price: 50,
                    grant: 10_000_000,
                },
                Service {
                    rating_group: 20,
                    name: "messaging".into(),
                    unit: Unit::Event,
                    price: 10,
                    grant: 1,
                },
            ],
        }
    }
}

impl Tariff {
    /// Checks the tariff; messages name the entry.
    pub fn validate(&self) -> Result<(), String> {
        if self.services.is_empty() {
            return Err("tariff: at least one [[tariff.service]] is needed".into());
        }
        for (i, service) in self.services.iter().enumerate() {
            if service.grant == 0 {
                return Err(format!(
                    "tariff.service[{i}] ({}): grant must be at least 1",
                    service.name
                ));
            }
            if self.services[..i]
                .iter()
                .any(|s| s.rating_group == service.rating_group)
            {
                return Err(format!(
                    "tariff.service[{i}]: rating_group {} appears twice",
                    service.rating_group
                ));
            }
        }
        if self.services.len() > usize::from(u8::MAX) {
            return Err("tariff: at most 255 services".into());
        }
        Ok(())
    }

    /// The index of the service with this Rating-Group.
    pub fn service_index(&self, rating_group: u32) -> Option<u8> {
        self.services
            .iter()
            .position(|s| s.rating_group == rating_group)
            .map(|i| i as u8)
    }

    /// The service at `index`.
    pub fn service(&self, index: u8) -> &Service {
        &self.services[usize::from(index)]
    }
}

impl Service {
    /// The cost of `units` counted units, rounded up to a whole minor unit.
    pub fn cost(&self, units: u64) -> i64 {
        let scale = u128::from(self.unit.scale());
        let money = (u128::from(units) * u128::from(self.price)).div_ceil(scale);
        i64::try_from(money).unwrap_or(i64::MAX)
    }

    /// The most counted units `money` pays for (rounded down).
    pub fn units_for(&self, money: i64) -> u64 {
        if money <= 0 {
            return 0;
        }
        if self.price == 0 {
            return self.grant;
        }
        let units =
            u128::from(money as u64) * u128::from(self.unit.scale()) / u128::from(self.price);
        u64::try_from(units).unwrap_or(u64::MAX)
    }

    /// Which counted-unit field of a service unit this service reads.
    pub fn units_of(&self, unit: &protocol::messages::ServiceUnit) -> u64 {
        match self.unit {
            Unit::Second => unit.cc_time.map_or(0, u64::from),
            Unit::Megabyte => unit.cc_total_octets.unwrap_or_else(|| {
                unit.cc_input_octets
                    .unwrap_or(0)
                    .saturating_add(unit.cc_output_octets.unwrap_or(0))
            }),
            Unit::Event => unit.cc_service_specific_units.unwrap_or(0),
        }
    }

    /// A service unit holding `units` in this service's field.
    pub fn unit_of(&self, units: u64) -> protocol::messages::ServiceUnit {
        self.unit.service_unit(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_round_up_per_report_and_units_round_down() {
        let tariff = Tariff::default();
        let voice = tariff.service(tariff.service_index(1).expect("voice"));
        assert_eq!(voice.cost(61), 122);
        assert_eq!(voice.units_for(121), 60);
        let data = tariff.service(tariff.service_index(10).expect("data"));
        assert_eq!(data.cost(1_000_000), 50);
        assert_eq!(data.cost(1), 1, "a started minor unit is charged");
        assert_eq!(data.cost(0), 0);
        assert_eq!(data.units_for(50), 1_000_000);
        assert_eq!(data.units_for(0), 0);
        assert!(tariff.validate().is_ok());
        assert_eq!(tariff.service_index(99), None);
    }
}
