//! Whole forward passes on the shipped MCU model: the same bits however the engine is run.

extern crate std;

use super::*;
use std::vec::Vec;

/// `include_bytes!` only guarantees byte alignment; the blob parser wants 16.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

/// The shipped MCU model: real trained int8 weights (H 128, 4 heads, I 192, 4 applications of the layer).
static MCU: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/sst2-albert-mcu.blob"));

/// xorshift64*: deterministic token ids and masks without a dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
#[cfg_attr(miri, ignore)] // a whole ALBERT forward pass per case: hours under Miri
fn last_layer_for_cls_only_gives_the_same_bits_as_every_token() {
    let model = Model::from_bytes(&MCU.0).unwrap();
    let c = *model.config();
    assert!(is_int8(&model));
    let mut state = 0x9e37_79b9_7f4a_7c15;
    let max = c.max_position_embeddings;
    let mut arena = std::vec![0u8; scratch_size_for_speed(&c, max, Precision::Int8)];
    for seq in [1, 2, 3, 5, 17, 32, 33, 64, max] {
        let ids: Vec<u32> = (0..seq)
            .map(|_| (next(&mut state) % c.vocab_size as u64) as u32)
            .collect();
        // A padded tail on odd lengths: the masked keys must not change the answer either way.
        let pad = if seq % 2 == 1 { seq / 3 } else { 0 };
        let mask: Vec<u32> = (0..seq).map(|t| u32::from(t < seq - pad)).collect();
        let types = std::vec![0u32; seq];
        let inputs = Inputs {
            input_ids: &ids,
            attention_mask: &mask,
            token_type_ids: &types,
        };
        // The smallest arena (one token per GEMM) and the fastest (the whole sequence per GEMM).
        let sizes = [
            scratch_size(&c, seq, Precision::Int8),
            scratch_size_for_speed(&c, seq, Precision::Int8),
        ];
        for size in sizes {
            let mut run = |full: bool| {
                let mut logits = [0f32; 8];
                let arena = &mut arena[..size];
                forward(
                    &model,
                    Precision::Int8,
                    &inputs,
                    arena,
                    &mut logits,
                    &mut NoObserver,
                    &mut TokenByToken,
                    &Sequential,
                    full,
                )
                .unwrap();
                logits.map(f32::to_bits)
            };
            let (pruned, full) = (run(false), run(true));
            assert_eq!(pruned, full, "seq {seq}, arena {size} B");
            assert!(pruned[..c.num_labels]
                .iter()
                .all(|&b| f32::from_bits(b).is_finite()));
        }
    }
}

/// Runs the jobs on scoped threads, last first, and leaves out every `skip`-th (the engine must run those).
struct Scrambled {
    threads: usize,
    skip: usize,
}

impl Parallel for Scrambled {
    fn threads(&self) -> usize {
        self.threads
    }

    fn run(&self, jobs: &mut [crate::parallel::Job<'_>]) {
        std::thread::scope(|scope| {
            for (k, job) in jobs.iter_mut().enumerate().rev() {
                if self.skip == 0 || k % self.skip != 0 {
                    scope.spawn(move || job.run());
                }
            }
        });
    }
}

#[test]
#[cfg_attr(miri, ignore)] // whole forward passes, on threads
fn threads_give_the_same_bits() {
    let model = Model::from_bytes(&MCU.0).unwrap();
    let c = *model.config();
    let max = c.max_position_embeddings;
    let mut arena = std::vec![0u8; scratch_size_for_speed(&c, max, Precision::Int8)];
    let mut state = 0x0123_4567_89ab_cdef;
    #[cfg(feature = "std")]
    let pools = [
        crate::parallel::Threads::new(2),
        crate::parallel::Threads::new(5),
    ];
    for seq in [1, 4, 31, 32, 33, 65, 100, max] {
        let ids: Vec<u32> = (0..seq)
            .map(|_| (next(&mut state) % c.vocab_size as u64) as u32)
            .collect();
        let inputs = Inputs::ids(&ids);
        for size in [
            scratch_size(&c, seq, Precision::Int8),
            scratch_size_for_speed(&c, seq, Precision::Int8),
        ] {
            let arena = &mut arena[..size];
            let mut expected = [0f32; 8];
            classify(&model, Precision::Int8, &inputs, arena, &mut expected).unwrap();
            #[cfg_attr(not(feature = "std"), allow(unused_mut))]
            let mut parallels: Vec<&dyn Parallel> = std::vec![
                &Scrambled {
                    threads: 2,
                    skip: 0
                },
                &Scrambled {
                    threads: 3,
                    skip: 2
                },
                &Scrambled {
                    threads: 16,
                    skip: 5
                },
                &Scrambled {
                    threads: 99,
                    skip: 0
                },
            ];
            #[cfg(feature = "std")]
            parallels.extend(pools.iter().map(|p| p as &dyn Parallel));
            for (i, par) in parallels.into_iter().enumerate() {
                let mut got = [0f32; 8];
                classify_parallel(&model, Precision::Int8, &inputs, arena, &mut got, par).unwrap();
                let bits = |l: [f32; 8]| l.map(f32::to_bits);
                assert_eq!(
                    bits(got),
                    bits(expected),
                    "seq {seq}, arena {size} B, parallel {i}"
                );
            }
        }
    }
}

/// An arena of exactly the plan's size, at any alignment, gives every buffer all it asks for: the byte total and
/// the carving agree.
#[test]
fn plans_carve_every_buffer_whole_from_an_arena_of_their_size() {
    let model = Model::from_bytes(&MCU.0).unwrap();
    let c = *model.config();
    let par = Sequential;
    let max = c.max_position_embeddings;
    let mut buf = std::vec![
        0u8;
        16 + scratch_size_for_speed(&c, max, Precision::Int8)
            .max(scratch_size(&c, max, Precision::F32))
    ];
    for seq in [1, 2, 7, 33, c.max_position_embeddings] {
        for skip in 0..16 {
            for tile in [1, 2, seq.min(MAX_TILE)] {
                let plan = Int8Plan::new(&c, seq, tile);
                let mut a = Arena::new(&mut buf[skip..skip + arena::ALIGN_SLACK + plan.bytes()]);
                assert!(
                    plan.carve(&mut a, tile, &par).is_complete(&plan),
                    "seq {seq} tile {tile}"
                );
            }
            let plan = F32Plan::new(&c, seq);
            let size = scratch_size(&c, seq, Precision::F32);
            let mut a = Arena::new(&mut buf[skip..skip + size]);
            assert!(plan.carve(&mut a).is_complete(&plan), "seq {seq}");
        }
    }
}
