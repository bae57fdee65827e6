//! albert-edge on QEMU's mps3-an547: Arm Corstone-300 with a Cortex-M55 (Helium, DSP extension, FPU).
//! Everything but the memory map and the exception handlers is in `albert-firmware`.
#![no_std]
#![no_main]

use albert_firmware::device::{self, Board};
use cortex_m_rt::{entry, exception, ExceptionFrame};

#[entry]
fn main() -> ! {
    device::run(&Board {
        name: "mps3-an547",
        cpu: "Cortex-M55",
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
