"""Protocol rules that two sides share and that are not the P0/serial codec: what the bridge and the cloud both
need of the device API (form cipher, DID and passcode generators), and what the flasher and the virtual bootloader
both need of the STM32 ROM bootloader. Below every side that uses it; imports only gizdev.errors and the standard
library (plus cryptography for the cipher)."""
