//! A component that exports an interface the host does not know (and no
//! `jobset:policy/meta`), for the host's tests of missing exports.

/// What the exported function returns.
pub fn answer() -> u32 {
    42
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        inline: "
            package other:plugin;
            interface outcome {
                decide: func(input: u32) -> u32;
            }
            world wrong {
                export outcome;
            }
        ",
    });

    struct Plugin;

    impl exports::other::plugin::outcome::Guest for Plugin {
        fn decide(input: u32) -> u32 {
            input + crate::answer()
        }
    }

    export!(Plugin);
}
