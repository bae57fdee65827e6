//! albert-edge on QEMU's mps2-an386: Arm MPS2 with a Cortex-M4F (DSP extension, FPU).
//! Everything but the memory map and the exception handlers is in `albert-firmware`.
#![no_std]
#![no_main]

use albert_firmware::device::{self, Board};
use cortex_m_rt::{entry, exception, ExceptionFrame};

#[entry]
fn main() -> ! {
    device::run(&Board {
        name: "mps2-an386",
        cpu: "Cortex-M4F",
    })
}

#[exception]
fn SysTick() {
    device::meter::on_wrap();
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    device::hard_fault(frame)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) -> ! {
    device::unexpected_exception(irqn)
}
