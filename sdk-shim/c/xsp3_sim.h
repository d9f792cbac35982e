/*
 * xsp3_sim.h: the simulator-only entry points. x3s_open calls xsp3_sim_set_params (in simulator
 * builds only) just before xsp3_config, on the same thread; xsp3_config consumes the parameters.
 */
#ifndef X3S_XSP3_SIM_H
#define X3S_XSP3_SIM_H

#include "x3s.h"

void xsp3_sim_set_params(const x3s_sim_params *p);

/* For tests: everything path was given (see x3s_sim_record). Returns XSP3_OK or
 * XSP3_INVALID_PATH. */
int xsp3_sim_get_record(int path, x3s_sim_record *out);

#endif
