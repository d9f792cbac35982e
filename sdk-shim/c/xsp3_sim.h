/*
 * xsp3_sim.h: the simulator-only entry points. x3s_open calls xsp3_sim_set_params (in simulator
 * builds only) just before xsp3_config, on the same thread; xsp3_config consumes the parameters.
 */
#ifndef X3S_XSP3_SIM_H
#define X3S_XSP3_SIM_H

#include "x3s.h"

void xsp3_sim_set_params(const x3s_sim_params *p);

/*
 * For tests: how path's clock and sync were last programmed: xsp3_clocks_setup's clock source,
 * flags and card, and xsp3_set_sync_mode's mode (-1, or card -2: never called). NULL outputs are
 * skipped. Returns XSP3_OK or XSP3_INVALID_PATH.
 */
int xsp3_sim_get_clock_setup(int path, int *clk_src, int *clk_flags, int *clk_card,
                             int *sync_mode);

#endif
