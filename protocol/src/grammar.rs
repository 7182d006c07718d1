//! Command and Grouped AVP grammars (RFC 6733 section 3.2 CCF, section 4.4) as Rust types.
//!
//! A grammar is declared once with [`avp_struct!`](crate::avp_struct): a struct whose fields are the AVPs in the
//! order the ABNF lists them, each `one` (`{ AVP }` or `< AVP >`), `opt` (`[ AVP ]`) or
//! `many` (`*[ AVP ]`). The macro derives a decoder (one pass over the AVPs, borrowing every
//! string from the message, unknown M-bit AVPs refused with 5001, duplicates of single AVPs
//! with 5009, missing required AVPs with 5005) and an encoder that writes the fields in
//! order. The same struct is the typed view and the builder, so encode then decode gives
//! back the value it started from.

use std::net::IpAddr;

use bytes::BytesMut;

use crate::avp::{Address, Avp, DiameterTime};
use crate::dictionary::{self, AvpDef, AvpType};
use crate::encode::AvpWriter;
use crate::error::DecodeError;
use crate::header::{ApplicationId, CommandCode, CommandFlags, EndToEndId, Header, HopByHopId};
use crate::message::MessageView;
use crate::result_code::ResultCode;

/// A value that one AVP carries.
pub trait AvpValue<'a>: Sized {
    /// Reads the value from an AVP defined by `def`.
    fn decode_avp(def: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError>;
    /// Writes the value as an AVP defined by `def`.
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>);

    /// Reads the value, refusing unknown M-bit AVPs inside it only when `strict` (Grouped
    /// values override this; for the others it is [`decode_avp`](Self::decode_avp)).
    fn decode_avp_with(def: &AvpDef, avp: &Avp<'a>, strict: bool) -> Result<Self, DecodeError> {
        let _ = strict;
        Self::decode_avp(def, avp)
    }
}

impl<'a> AvpValue<'a> for u32 {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.u32()
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.u32(def, *self);
    }
}

impl<'a> AvpValue<'a> for u64 {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.u64()
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.u64(def, *self);
    }
}

impl<'a> AvpValue<'a> for i32 {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.i32()
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.i32(def, *self);
    }
}

impl<'a> AvpValue<'a> for i64 {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.i64()
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.i64(def, *self);
    }
}

impl<'a> AvpValue<'a> for &'a str {
    fn decode_avp(def: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        match def.ty {
            AvpType::DiameterIdentity => avp.identity(),
            _ => avp.utf8(),
        }
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.utf8(def, self);
    }
}

impl<'a> AvpValue<'a> for &'a [u8] {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        Ok(avp.octets())
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.octets(def, self);
    }
}

impl<'a> AvpValue<'a> for DiameterTime {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.time()
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.time(def, *self);
    }
}

impl<'a> AvpValue<'a> for Address<'a> {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.address()
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        match *self {
            Address::Ip(ip) => w.address(def, ip),
            Address::Other { family, address } => w.address_family(def, family, address),
        }
    }
}

impl<'a> AvpValue<'a> for IpAddr {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        match avp.address()? {
            Address::Ip(ip) => Ok(ip),
            Address::Other { .. } => Err(DecodeError::InvalidAvpValue {
                avp: avp.location(),
            }),
        }
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.address(def, *self);
    }
}

impl<'a> AvpValue<'a> for ResultCode {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.u32().map(ResultCode)
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.u32(def, self.0);
    }
}

impl<'a> AvpValue<'a> for ApplicationId {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        avp.u32().map(ApplicationId)
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        w.u32(def, self.0);
    }
}

macro_rules! enumerated_values {
    ($($ty:ident),*) => {$(
        impl<'a> AvpValue<'a> for dictionary::$ty {
            fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
                avp.enumerated().map(dictionary::$ty)
            }
            fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
                w.i32(def, self.0);
            }
        }
    )*};
}

enumerated_values!(
    AccountingRecordType,
    CcRequestType,
    DisconnectCause,
    TerminationCause,
    SubscriptionIdType,
    FinalUnitAction,
    RedirectHostUsage,
    ReAuthRequestType,
    AuthSessionState,
    MultipleServicesIndicator
);

/// The raw content of a Failed-AVP (its member AVPs, undecoded: they are whatever was
/// wrong with some message).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct FailedAvpData<'a>(pub &'a [u8]);

impl std::fmt::Debug for FailedAvpData<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FailedAvpData(")?;
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

impl<'a> AvpValue<'a> for FailedAvpData<'a> {
    fn decode_avp(_: &AvpDef, avp: &Avp<'a>) -> Result<Self, DecodeError> {
        Ok(Self(avp.data()))
    }
    fn encode_avp(&self, def: &AvpDef, w: &mut AvpWriter<'_>) {
        // Written back exactly as received (padding after, not inside), so that even a
        // malformed Failed-AVP survives a round trip unchanged.
        w.octets(def, self.0);
    }
}

/// The part of the header an encoder needs besides the command itself.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Envelope {
    /// The header's Application-Id.
    pub application: ApplicationId,
    /// The hop-by-hop identifier.
    pub hop_by_hop: HopByHopId,
    /// The end-to-end identifier.
    pub end_to_end: EndToEndId,
    /// Set the T flag (a retransmission after failover; requests only).
    pub retransmit: bool,
}

impl Envelope {
    /// The envelope of a new request.
    pub fn request(
        application: ApplicationId,
        hop_by_hop: HopByHopId,
        end_to_end: EndToEndId,
    ) -> Self {
        Self {
            application,
            hop_by_hop,
            end_to_end,
            retransmit: false,
        }
    }

    /// The envelope of the answer to `request`: same application and identifiers.
    pub fn answer_to(request: &Header) -> Self {
        Self {
            application: request.application,
            hop_by_hop: request.hop_by_hop,
            end_to_end: request.end_to_end,
            retransmit: false,
        }
    }
}

/// A command: a message type with a grammar, decoded from a view and encoded into a buffer.
pub trait Command<'a>: Sized {
    /// The command code.
    const COMMAND: CommandCode;
    /// The command flags the grammar sets (R for requests, P if proxiable).
    const FLAGS: CommandFlags;

    /// Decodes the message. A view of another command, or of a request when this is an
    /// answer (or the reverse), is refused with 3001.
    fn decode(view: &MessageView<'a>) -> Result<Self, DecodeError>;

    /// Encodes the message at the end of `buf`; returns its length.
    fn encode(&self, envelope: Envelope, buf: &mut BytesMut) -> usize;
}

/// Refuses an AVP the grammar does not name, if its M bit says it must be understood.
/// Route-Record and Proxy-Info may appear in any request that went through agents; they are
/// accepted and not interpreted.
pub(crate) fn unknown_avp(avp: &Avp<'_>) -> Result<(), DecodeError> {
    let transit = avp.vendor_id().is_none()
        && matches!(
            avp.code().0,
            dictionary::codes::ROUTE_RECORD | dictionary::codes::PROXY_INFO
        );
    if avp.is_mandatory() && !transit {
        return Err(DecodeError::AvpUnsupported {
            avp: avp.location(),
        });
    }
    Ok(())
}

/// Declares a grammar (see the module documentation). `grouped` structs are AVP values;
/// `message` structs are commands.
#[macro_export]
#[doc(hidden)]
macro_rules! avp_struct {
    (
        $(#[$meta:meta])*
        $kind:ident $name:ident $(<$slt:lifetime>)? [$lt:lifetime] $(( $($header:tt)* ))? {
            $( $(#[$fmeta:meta])* $field:ident : $fkind:ident $fty:ty = $def:ident, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Debug, Default)]
        pub struct $name $(<$slt>)? {
            $( $(#[$fmeta])* pub $field: $crate::avp_struct!(@type $fkind $fty), )*
        }

        impl<$lt> $name $(<$slt>)? {
            /// Decodes the fields from a run of AVPs, refusing unknown M-bit AVPs.
            pub fn decode_avps(
                avps: $crate::avp::AvpIter<$lt>,
            ) -> Result<Self, $crate::error::DecodeError> {
                Self::decode_avps_with(avps, true)
            }

            /// Decodes the fields from a run of AVPs; unknown M-bit AVPs are refused when
            /// `strict`, skipped otherwise (for answers, which are never answered back).
            pub fn decode_avps_with(
                avps: $crate::avp::AvpIter<$lt>,
                strict: bool,
            ) -> Result<Self, $crate::error::DecodeError> {
                #[allow(unused_imports)]
                use $crate::grammar::AvpValue as _;
                $( let mut $field = $crate::avp_struct!(@init $fkind $fty); )*
                for avp in avps {
                    let avp = avp?;
                    if avp.vendor_id().is_none() {
                        match avp.code().0 {
                            $(
                                $crate::dictionary::codes::$def => {
                                    $crate::avp_struct!(@store $fkind $field, $def, avp, strict);
                                    continue;
                                }
                            )*
                            _ => {}
                        }
                    }
                    if strict {
                        $crate::grammar::unknown_avp(&avp)?;
                    }
                }
                Ok(Self { $( $field: $crate::avp_struct!(@finish $fkind $field, $def), )* })
            }

            /// Encodes the fields, in grammar order.
            pub fn encode_avps(&self, w: &mut $crate::encode::AvpWriter<'_>) {
                #[allow(unused_imports)]
                use $crate::grammar::AvpValue as _;
                $( $crate::avp_struct!(@encode $fkind self.$field, $def, w); )*
            }
        }

        $crate::avp_struct!(@impl $kind $name $(<$slt>)? [$lt] $(( $($header)* ))?);
    };

    (@type one $ty:ty) => { $ty };
    (@type opt $ty:ty) => { Option<$ty> };
    (@type many $ty:ty) => { $ty };

    (@init one $ty:ty) => { None::<$ty> };
    (@init opt $ty:ty) => { None::<$ty> };
    (@init many $ty:ty) => { <$ty>::default() };

    (@store one $field:ident, $def:ident, $avp:ident, $strict:ident) => {
        $crate::avp_struct!(@store opt $field, $def, $avp, $strict)
    };
    (@store opt $field:ident, $def:ident, $avp:ident, $strict:ident) => {{
        if $field.is_some() {
            return Err($crate::error::DecodeError::AvpOccursTooManyTimes { avp: $avp.location() });
        }
        $field = Some($crate::grammar::AvpValue::decode_avp_with(
            &$crate::dictionary::$def,
            &$avp,
            $strict,
        )?);
    }};
    (@store many $field:ident, $def:ident, $avp:ident, $strict:ident) => {
        $field.push($crate::grammar::AvpValue::decode_avp_with(
            &$crate::dictionary::$def,
            &$avp,
            $strict,
        )?)
    };

    (@finish one $field:ident, $def:ident) => {
        $field.ok_or($crate::error::DecodeError::MissingAvp {
            code: $crate::dictionary::$def.code,
            vendor: $crate::dictionary::$def.vendor,
        })?
    };
    (@finish opt $field:ident, $def:ident) => { $field };
    (@finish many $field:ident, $def:ident) => { $field };

    (@encode one $value:expr, $def:ident, $w:ident) => {
        $value.encode_avp(&$crate::dictionary::$def, $w)
    };
    (@encode opt $value:expr, $def:ident, $w:ident) => {
        if let Some(value) = &$value {
            value.encode_avp(&$crate::dictionary::$def, $w);
        }
    };
    (@encode many $value:expr, $def:ident, $w:ident) => {
        for value in &$value {
            value.encode_avp(&$crate::dictionary::$def, $w);
        }
    };

    (@impl grouped $name:ident $(<$slt:lifetime>)? [$lt:lifetime]) => {
        impl<$lt> $crate::grammar::AvpValue<$lt> for $name $(<$slt>)? {
            fn decode_avp(
                _: &$crate::dictionary::AvpDef,
                avp: &$crate::avp::Avp<$lt>,
            ) -> Result<Self, $crate::error::DecodeError> {
                Self::decode_avps(avp.grouped())
            }
            fn decode_avp_with(
                _: &$crate::dictionary::AvpDef,
                avp: &$crate::avp::Avp<$lt>,
                strict: bool,
            ) -> Result<Self, $crate::error::DecodeError> {
                Self::decode_avps_with(avp.grouped(), strict)
            }
            fn encode_avp(
                &self,
                def: &$crate::dictionary::AvpDef,
                w: &mut $crate::encode::AvpWriter<'_>,
            ) {
                w.group(def, |g| self.encode_avps(g));
            }
        }
    };
    (@impl message $name:ident $(<$slt:lifetime>)? [$lt:lifetime] (
        command: $command:ident, flags: $($flag:ident)|+
    )) => {
        impl<$lt> $crate::grammar::Command<$lt> for $name $(<$slt>)? {
            const COMMAND: $crate::header::CommandCode = $crate::header::CommandCode::$command;
            const FLAGS: $crate::header::CommandFlags = $crate::header::CommandFlags(
                0 $(| $crate::header::CommandFlags::$flag.0)+
            );

            fn decode(
                view: &$crate::message::MessageView<$lt>,
            ) -> Result<Self, $crate::error::DecodeError> {
                $crate::grammar::check_command(view, Self::COMMAND, Self::FLAGS)?;
                // Answers are never answered back, so an unknown M-bit AVP in one is skipped.
                Self::decode_avps_with(view.avps(), Self::FLAGS.is_request())
            }

            fn encode(&self, envelope: $crate::grammar::Envelope, buf: &mut $crate::__private::BytesMut) -> usize {
                let mut flags = Self::FLAGS;
                if envelope.retransmit {
                    flags = flags.with($crate::header::CommandFlags::RETRANSMIT);
                }
                let mut w = $crate::encode::MessageWriter::new(
                    buf,
                    flags,
                    Self::COMMAND,
                    envelope.application,
                    envelope.hop_by_hop,
                    envelope.end_to_end,
                );
                self.encode_avps(&mut w);
                w.finish()
            }
        }
    };
}

/// Checks that a view holds the command a typed decoder expects.
pub(crate) fn check_command(
    view: &MessageView<'_>,
    command: CommandCode,
    flags: CommandFlags,
) -> Result<(), DecodeError> {
    let header = view.header();
    if header.command != command || header.flags.is_request() != flags.is_request() {
        return Err(DecodeError::CommandUnsupported {
            command: header.command,
        });
    }
    view.check_flags()
}
