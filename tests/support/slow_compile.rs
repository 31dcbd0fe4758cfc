//! Components built to be slow to compile: valid, small enough for a
//! ConfigMap, and quadratic for the compiler (one function of `depth`
//! nested blocks, left by `br_table`s that name every one of them).
//! About 20 bytes per block; 20,000 blocks (400 KB) take seconds.

use wasm_encoder::{
    BlockType, CodeSection, Component, Function, FunctionSection, Module, ModuleSection,
    TypeSection, ValType,
};

/// A component whose one core module takes time quadratic in `depth` to
/// compile. It exports nothing, so once compiled it is rejected as a
/// plugin: it is only ever a cost.
pub fn slow_to_compile(depth: u32) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut functions = FunctionSection::new();
    functions.function(0);
    let mut body = Function::new([]);
    for _ in 0..depth {
        body.instructions().block(BlockType::Empty);
    }
    let targets: Vec<u32> = (0..depth).collect();
    for _ in 0..4 {
        body.instructions()
            .local_get(0)
            .br_table(targets.clone(), 0);
    }
    for i in 0..depth {
        body.instructions()
            .end()
            .local_get(0)
            .i32_const(i as i32)
            .i32_add()
            .local_set(0);
    }
    body.instructions().local_get(0).end();
    let mut code = CodeSection::new();
    code.function(&body);
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}
