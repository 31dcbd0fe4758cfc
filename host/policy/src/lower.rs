//! The snapshot and the placement request written into a plugin's memory
//! in one pass, instead of field by field.
//!
//! wasmtime 48's generic lowering looks the guest memory up again for every
//! field it writes (about 10 ns each) and works out each field's offset at
//! run time: a fifth of a startup decision on the 64-Job snapshot. Here
//! each record's bytes are laid out in a host buffer at offsets fixed at
//! compile time, and the buffer and the string bytes are copied into the
//! guest once, at the end.
//!
//! What the guest sees is what the canonical ABI prescribes and the
//! generic lowering produces: the same layout, and `cabi_realloc` called
//! for every list and string, empty ones included, in the same order
//! (depth first, field by field). [`Fast`] is used only where the plugin's
//! strings are UTF-8 (every Rust plugin); other encodings take wasmtime's
//! own path. The layouts are checked against wasmtime's at compile time,
//! and the echo test of `tests/wasm` reads every field back from a plugin.

use crate::snapshot::{
    Dependency, FailurePolicy, FailurePolicyRule, FinishedCondition, Job, Jobset, JobsetStatus,
    KeyValue, Occupant, PendingJob, PlacementRequest, ReplicatedJob, ReplicatedJobStatus, Snapshot,
    SuccessPolicy, TopologyDomain,
};
use std::mem::MaybeUninit;
use wasmtime::component::__internal::wasmtime_environ::component::StringEncoding;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

/// A record lowered by this module rather than by its derived `Lower`.
pub(crate) struct Fast<'a, T>(pub &'a T);

/// Records this module can lay out.
pub(crate) trait Encode {
    /// Size and alignment, as the canonical ABI computes them.
    const LAYOUT: Abi;
    /// Writes `self` at `at` in `enc`'s staged bytes.
    fn encode<'s, C: Alloc>(&'s self, enc: &mut Encoder<'s, C>, at: usize) -> wasmtime::Result<()>;
}

#[allow(unsafe_code)]
// SAFETY: the same type as the wrapped record: its flat form, ABI and type
// check are the record's own.
unsafe impl<T: ComponentType + Encode + Sync> ComponentType for Fast<'_, T> {
    type Lower = T::Lower;
    const ABI: CanonicalAbiInfo = T::ABI;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        T::typecheck(ty, types)
    }
}

#[allow(unsafe_code)]
// SAFETY: writes exactly the bytes the record's derived `Lower` would
// (layouts checked below), within blocks the guest's realloc returned and
// wasmtime bounds-checked.
unsafe impl<T: Lower + Encode + Sync> Lower for Fast<'_, T> {
    fn linear_lower_to_flat<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        self.0.linear_lower_to_flat(cx, ty, dst)
    }

    fn linear_lower_to_memory<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        if !matches!(cx.options().string_encoding, StringEncoding::Utf8) {
            return self.0.linear_lower_to_memory(cx, ty, offset);
        }
        let mut enc = Encoder::new(Guest(cx));
        let at = enc.block(offset, T::LAYOUT.size);
        self.0.encode(&mut enc, at)?;
        let (staged, blocks, strings, Guest(cx)) = enc.into_parts();
        let memory = cx.as_slice_mut();
        for b in blocks {
            guest_range(memory, b.guest, b.len)?
                .copy_from_slice(&staged[b.staged..b.staged + b.len]);
        }
        for (at, s) in strings {
            guest_range(memory, at, s.len())?.copy_from_slice(s.as_bytes());
        }
        Ok(())
    }
}

/// `len` bytes of guest memory at `at`. wasmtime already checked every
/// block the guest's realloc returned, and memory never shrinks, so this
/// fails only if that ever changes, and then with an error, not a panic.
fn guest_range(memory: &mut [u8], at: usize, len: usize) -> wasmtime::Result<&mut [u8]> {
    at.checked_add(len)
        .and_then(|end| memory.get_mut(at..end))
        .ok_or_else(|| wasmtime::format_err!("block {at}+{len} is outside the plugin's memory"))
}

/// The guest's allocator: `realloc(0, 0, align, size)`.
pub(crate) trait Alloc {
    fn alloc(&mut self, align: u32, size: usize) -> wasmtime::Result<usize>;
}

struct Guest<'c, 'a, U: 'static>(&'c mut LowerContext<'a, U>);

impl<U: 'static> Alloc for Guest<'_, '_, U> {
    fn alloc(&mut self, align: u32, size: usize) -> wasmtime::Result<usize> {
        // wasmtime checks that the block is aligned and inside memory.
        self.0.realloc(0, 0, align, size)
    }
}

/// Size and alignment in the canonical ABI (32-bit memories).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Abi {
    size: usize,
    align: usize,
}

const fn align_to(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const U8: Abi = Abi { size: 1, align: 1 };
const I32: Abi = Abi { size: 4, align: 4 };
const I64: Abi = Abi { size: 8, align: 8 };
/// A string or a list: pointer and length.
const SPAN: Abi = Abi { size: 8, align: 4 };

/// `option<t>`: a one-byte case, then the payload at its alignment.
const fn option(t: Abi) -> Abi {
    let align = max(1, t.align);
    Abi {
        size: align_to(payload(t) + t.size, align),
        align,
    }
}

/// Where the payload of an `option<t>` starts.
const fn payload(t: Abi) -> usize {
    align_to(1, t.align)
}

/// A record's fields at their offsets.
struct Record<const N: usize> {
    at: [usize; N],
    abi: Abi,
}

const fn record<const N: usize>(fields: [Abi; N]) -> Record<N> {
    let mut at = [0; N];
    let mut offset = 0;
    let mut align = 1;
    let mut i = 0;
    while i < N {
        offset = align_to(offset, fields[i].align);
        at[i] = offset;
        offset += fields[i].size;
        align = max(align, fields[i].align);
        i += 1;
    }
    Record {
        at,
        abi: Abi {
            size: align_to(offset, align),
            align,
        },
    }
}

/// The layout must be wasmtime's, or the guest reads garbage.
const fn same(abi: Abi, info: CanonicalAbiInfo) -> bool {
    abi.size == info.size32 as usize && abi.align == info.align32 as usize
}

/// A record's layout from its fields, checked at compile time against the
/// one wasmtime derives for the same WIT record.
macro_rules! layout {
    ($name:ident: $ty:ty = [$($field:expr),* $(,)?]) => {
        const $name: Record<{ [$(stringify!($field)),*].len() }> = record([$($field),*]);
        const _: () = assert!(same($name.abi, <$ty as ComponentType>::ABI), stringify!($ty));
    };
}

layout!(KEY_VALUE: KeyValue = [SPAN, SPAN]);
layout!(DEPENDENCY: Dependency = [SPAN, U8]);
layout!(REPLICATED_JOB: ReplicatedJob = [SPAN, SPAN, I32, I32, option(I32), SPAN]);
layout!(SUCCESS: SuccessPolicy = [U8, SPAN]);
layout!(RULE: FailurePolicyRule = [SPAN, U8, SPAN, SPAN, SPAN]);
layout!(FAILURE: FailurePolicy = [I32, U8, SPAN]);
layout!(RJ_STATUS: ReplicatedJobStatus = [SPAN, I32, I32, I32, I32, I32, SPAN, SPAN]);
layout!(STATUS: JobsetStatus = [I32, I32, SPAN]);
layout!(JOBSET: Jobset = [
    SPAN, SPAN, SPAN, SPAN, SPAN, U8, SPAN, SUCCESS.abi, option(FAILURE.abi), U8, STATUS.abi,
]);
layout!(FINISHED: FinishedCondition = [U8, SPAN, SPAN, I64]);
layout!(JOB: Job = [SPAN, SPAN, I32, I32, I32, I32, I32, I32, I32, U8, option(FINISHED.abi)]);
layout!(SNAPSHOT: Snapshot = [JOBSET.abi, SPAN, I64, SPAN, SPAN]);
layout!(PENDING: PendingJob = [SPAN, SPAN, I32, SPAN, option(SPAN), U8, option(I32), I32]);
layout!(OCCUPANT: Occupant = [SPAN, option(I32)]);
layout!(DOMAIN: TopologyDomain = [SPAN, SPAN, I32, I32, SPAN]);
layout!(REQUEST: PlacementRequest = [SPAN, SPAN]);

/// A block of guest memory and where its bytes are staged.
struct Block {
    guest: usize,
    staged: usize,
    len: usize,
}

/// The bytes of every block, staged on the host, and the strings to copy,
/// until they are all written into the guest at once.
pub(crate) struct Encoder<'s, C> {
    alloc: C,
    staged: Vec<u8>,
    blocks: Vec<Block>,
    strings: Vec<(usize, &'s str)>,
}

type Parts<'s, C> = (Vec<u8>, Vec<Block>, Vec<(usize, &'s str)>, C);

/// The canonical ABI's bound on a string's bytes (wasmtime's too).
const MAX_STRING_BYTES: usize = (1 << 31) - 1;

impl<'s, C: Alloc> Encoder<'s, C> {
    fn new(alloc: C) -> Self {
        Encoder {
            alloc,
            staged: Vec::with_capacity(4096),
            blocks: Vec::with_capacity(64),
            strings: Vec::with_capacity(256),
        }
    }

    fn into_parts(self) -> Parts<'s, C> {
        (self.staged, self.blocks, self.strings, self.alloc)
    }

    /// Stages `len` zeroed bytes for guest address `guest`.
    fn block(&mut self, guest: usize, len: usize) -> usize {
        let staged = self.staged.len();
        self.staged.resize(staged + len, 0);
        self.blocks.push(Block { guest, staged, len });
        staged
    }

    fn u8(&mut self, at: usize, v: u8) {
        self.staged[at] = v;
    }

    fn bool(&mut self, at: usize, v: bool) {
        self.u8(at, u8::from(v));
    }

    fn u32(&mut self, at: usize, v: u32) {
        self.staged[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn i32(&mut self, at: usize, v: i32) {
        self.staged[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn i64(&mut self, at: usize, v: i64) {
        self.staged[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    fn span(&mut self, at: usize, ptr: usize, len: usize) -> wasmtime::Result<()> {
        self.u32(at, u32::try_from(ptr)?);
        self.u32(at + 4, u32::try_from(len)?);
        Ok(())
    }

    fn string(&mut self, at: usize, s: &'s str) -> wasmtime::Result<()> {
        if s.len() > MAX_STRING_BYTES {
            wasmtime::bail!("string length of {} too large to copy into wasm", s.len());
        }
        let ptr = self.alloc.alloc(1, s.len())?;
        self.strings.push((ptr, s));
        self.span(at, ptr, s.len())
    }

    /// An `option` whose payload is `inner` bytes, written by `write`.
    fn option<E>(
        &mut self,
        at: usize,
        v: Option<&'s E>,
        inner: Abi,
        write: impl FnOnce(&mut Self, usize, &'s E) -> wasmtime::Result<()>,
    ) -> wasmtime::Result<()> {
        match v {
            Some(v) => {
                self.u8(at, 1);
                write(self, at + payload(inner), v)
            }
            None => Ok(()),
        }
    }

    fn option_i32(&mut self, at: usize, v: Option<i32>) {
        if let Some(v) = v {
            self.u8(at, 1);
            self.i32(at + payload(I32), v);
        }
    }

    fn option_string(&mut self, at: usize, v: Option<&'s String>) -> wasmtime::Result<()> {
        self.option(at, v, SPAN, |enc, at, s| enc.string(at, s))
    }

    fn option_record<E: Encode>(&mut self, at: usize, v: Option<&'s E>) -> wasmtime::Result<()> {
        self.option(at, v, E::LAYOUT, |enc, at, e| e.encode(enc, at))
    }

    /// A list whose elements are `elem` bytes each, written by `each`.
    fn list<E>(
        &mut self,
        at: usize,
        items: &'s [E],
        elem: Abi,
        mut each: impl FnMut(&mut Self, usize, &'s E) -> wasmtime::Result<()>,
    ) -> wasmtime::Result<()> {
        let size = items
            .len()
            .checked_mul(elem.size)
            .ok_or_else(|| wasmtime::format_err!("size overflow copying a list"))?;
        let ptr = self.alloc.alloc(u32::try_from(elem.align)?, size)?;
        self.span(at, ptr, items.len())?;
        let base = self.block(ptr, size);
        for (i, item) in items.iter().enumerate() {
            each(self, base + i * elem.size, item)?;
        }
        Ok(())
    }

    fn strings(&mut self, at: usize, items: &'s [String]) -> wasmtime::Result<()> {
        self.list(at, items, SPAN, |enc, at, s| enc.string(at, s))
    }

    fn numbers(&mut self, at: usize, items: &'s [i32]) -> wasmtime::Result<()> {
        self.list(at, items, I32, |enc, at, v| {
            enc.i32(at, *v);
            Ok(())
        })
    }

    fn records<E: Encode>(&mut self, at: usize, items: &'s [E]) -> wasmtime::Result<()> {
        self.list(at, items, E::LAYOUT, |enc, at, e| e.encode(enc, at))
    }
}

/// `impl Encode` for a record: `f(i)` is where its field `i` goes. An enum
/// is written as `value as u8`: wasmtime's bindgen declares the cases in
/// WIT order on a `#[repr(u8)]` enum, so that is the case's index (the echo
/// test sends every case).
macro_rules! encode_as {
    ($ty:ty, $layout:ident, |$self:ident, $enc:ident, $f:ident| $body:block) => {
        impl Encode for $ty {
            const LAYOUT: Abi = $layout.abi;
            fn encode<'s, C: Alloc>(
                &'s $self,
                $enc: &mut Encoder<'s, C>,
                at: usize,
            ) -> wasmtime::Result<()> {
                let $f = |i: usize| at + $layout.at[i];
                $body
                Ok(())
            }
        }
    };
}

encode_as!(KeyValue, KEY_VALUE, |self, enc, f| {
    enc.string(f(0), &self.key)?;
    enc.string(f(1), &self.value)?;
});

encode_as!(Dependency, DEPENDENCY, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.u8(f(1), self.status as u8);
});

encode_as!(ReplicatedJob, REPLICATED_JOB, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.string(f(1), &self.group_name)?;
    enc.i32(f(2), self.replicas);
    enc.i32(f(3), self.parallelism);
    enc.option_i32(f(4), self.completions);
    enc.records(f(5), &self.depends_on)?;
});

encode_as!(SuccessPolicy, SUCCESS, |self, enc, f| {
    enc.u8(f(0), self.operator as u8);
    enc.strings(f(1), &self.target_replicated_jobs)?;
});

encode_as!(FailurePolicyRule, RULE, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.u8(f(1), self.action as u8);
    enc.strings(f(2), &self.on_job_failure_reasons)?;
    enc.strings(f(3), &self.on_job_failure_message_patterns)?;
    enc.strings(f(4), &self.target_replicated_jobs)?;
});

encode_as!(FailurePolicy, FAILURE, |self, enc, f| {
    enc.i32(f(0), self.max_restarts);
    enc.u8(f(1), self.restart_strategy as u8);
    enc.records(f(2), &self.rules)?;
});

encode_as!(ReplicatedJobStatus, RJ_STATUS, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.i32(f(1), self.ready);
    enc.i32(f(2), self.succeeded);
    enc.i32(f(3), self.failed);
    enc.i32(f(4), self.active);
    enc.i32(f(5), self.suspended);
    enc.numbers(f(6), &self.job_restarts)?;
    enc.numbers(f(7), &self.job_restarts_count_towards_max)?;
});

encode_as!(JobsetStatus, STATUS, |self, enc, f| {
    enc.i32(f(0), self.restarts);
    enc.i32(f(1), self.restarts_count_towards_max);
    enc.records(f(2), &self.replicated_jobs)?;
});

encode_as!(Jobset, JOBSET, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.string(f(1), &self.namespace)?;
    enc.string(f(2), &self.uid)?;
    enc.records(f(3), &self.labels)?;
    enc.records(f(4), &self.annotations)?;
    enc.bool(f(5), self.suspended);
    enc.records(f(6), &self.replicated_jobs)?;
    self.success_policy.encode(enc, f(7))?;
    enc.option_record(f(8), self.failure_policy.as_ref())?;
    enc.u8(f(9), self.startup_order as u8);
    self.status.encode(enc, f(10))?;
});

encode_as!(FinishedCondition, FINISHED, |self, enc, f| {
    enc.u8(f(0), self.kind as u8);
    enc.string(f(1), &self.reason)?;
    enc.string(f(2), &self.message)?;
    enc.i64(f(3), self.time);
});

encode_as!(Job, JOB, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.string(f(1), &self.replicated_job)?;
    enc.i32(f(2), self.job_index);
    enc.i32(f(3), self.restart_attempt);
    enc.i32(f(4), self.job_restart_attempt);
    enc.i32(f(5), self.active);
    enc.i32(f(6), self.ready);
    enc.i32(f(7), self.succeeded);
    enc.i32(f(8), self.failed);
    enc.bool(f(9), self.suspended);
    enc.option_record(f(10), self.finished.as_ref())?;
});

encode_as!(Snapshot, SNAPSHOT, |self, enc, f| {
    self.jobset.encode(enc, f(0))?;
    enc.records(f(1), &self.jobs)?;
    enc.i64(f(2), self.now);
    enc.strings(f(3), &self.feature_gates)?;
    enc.string(f(4), &self.config)?;
});

encode_as!(PendingJob, PENDING, |self, enc, f| {
    enc.string(f(0), &self.name)?;
    enc.string(f(1), &self.replicated_job)?;
    enc.i32(f(2), self.job_index);
    enc.string(f(3), &self.job_key)?;
    enc.option_string(f(4), self.exclusive_topology.as_ref())?;
    enc.bool(f(5), self.node_selector_strategy);
    enc.option_i32(f(6), self.priority);
    enc.i32(f(7), self.pods);
});

encode_as!(Occupant, OCCUPANT, |self, enc, f| {
    enc.string(f(0), &self.job_key)?;
    enc.option_i32(f(1), self.priority);
});

encode_as!(TopologyDomain, DOMAIN, |self, enc, f| {
    enc.string(f(0), &self.topology_key)?;
    enc.string(f(1), &self.value)?;
    enc.u32(f(2), self.nodes);
    enc.u32(f(3), self.ready_nodes);
    enc.records(f(4), &self.occupied_by)?;
});

encode_as!(PlacementRequest, REQUEST, |self, enc, f| {
    enc.records(f(0), &self.jobs)?;
    enc.records(f(1), &self.domains)?;
});

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for the guest's realloc: bumps through an address space,
    /// recording each call.
    struct Bump {
        calls: Vec<(u32, usize)>,
        top: usize,
    }

    impl Alloc for Bump {
        fn alloc(&mut self, align: u32, size: usize) -> wasmtime::Result<usize> {
            self.calls.push((align, size));
            let at = align_to(self.top, align as usize);
            self.top = at + size;
            Ok(at)
        }
    }

    #[test]
    fn a_block_outside_memory_is_an_error() {
        let mut memory = [0u8; 16];
        assert_eq!(guest_range(&mut memory, 8, 8).expect("fits").len(), 8);
        let err = guest_range(&mut memory, 12, 8).expect_err("past the end");
        assert!(err.to_string().contains("12+8"), "{err}");
        assert!(
            guest_range(&mut memory, usize::MAX, 2).is_err(),
            "no overflow"
        );
    }

    #[test]
    fn option_layouts_follow_the_payload_alignment() {
        assert_eq!(option(I32), Abi { size: 8, align: 4 });
        assert_eq!(option(SPAN), Abi { size: 12, align: 4 });
        assert_eq!(option(I64), Abi { size: 16, align: 8 });
        assert_eq!(option(U8), Abi { size: 2, align: 1 });
        assert_eq!(FINISHED.at, [0, 4, 12, 24]);
        assert_eq!(option(FINISHED.abi), Abi { size: 40, align: 8 });
    }

    #[test]
    fn a_domain_is_laid_out_and_allocated_field_by_field() {
        let domain = TopologyDomain {
            topology_key: "rack".into(),
            value: "r1".into(),
            nodes: 3,
            ready_nodes: 2,
            occupied_by: vec![Occupant {
                job_key: "k".into(),
                priority: Some(-5),
            }],
        };
        let mut enc = Encoder::new(Bump {
            calls: Vec::new(),
            top: 1000,
        });
        let at = enc.block(0, DOMAIN.abi.size);
        domain.encode(&mut enc, at).expect("encodes");
        let (staged, blocks, strings, bump) = enc.into_parts();
        // Depth first, in field order, as the canonical ABI calls realloc.
        assert_eq!(bump.calls, [(1, 4), (1, 2), (4, 16), (1, 1)]);
        assert_eq!(strings, [(1000, "rack"), (1004, "r1"), (1024, "k")]);
        let word = |at: usize| u32::from_le_bytes(staged[at..at + 4].try_into().expect("4 bytes"));
        assert_eq!(
            [0, 4, 8, 12, 16, 20, 24, 28].map(word),
            [1000, 4, 1004, 2, 3, 2, 1008, 1],
            "key, value, nodes, ready nodes, occupied-by"
        );
        let occupant = blocks[1].staged;
        assert_eq!(blocks[1].guest, 1008);
        assert_eq!([word(occupant), word(occupant + 4)], [1024, 1]);
        assert_eq!(staged[occupant + 8], 1, "some");
        assert_eq!(word(occupant + 12) as i32, -5);
    }
}
