import { api } from '../../api/client';
import type { LoginRequest, User } from '../../api/types';

export const fetchCurrentUser = () => api.get<User>('/api/v1/auth/me/');
export const login = (credentials: LoginRequest) => api.post<User>('/api/v1/auth/login/', credentials);
export const logout = () => api.post<null>('/api/v1/auth/logout/');
