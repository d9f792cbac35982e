/* Runs the no_std self-test and reports its verdict. */
#include <stdint.h>
#include <stdio.h>

uint32_t acq_core_no_std_selftest(void);

int main(void) {
    uint32_t code = acq_core_no_std_selftest();
    if (code != 0) {
        fprintf(stderr, "acq-core no_std self-test failed with code %u\n", code);
        return 1;
    }
    printf("acq-core no_std self-test: 1000 frames through engine and ring, no std, no alloc\n");
    return 0;
}
